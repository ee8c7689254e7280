"""How every graph of this package runs: one mode for the handler, the offline scorer over an
artifact and the benchmarks, so that what a benchmark times is what a server runs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence the DeprecationWarning torch 2.11 emits on every TorchScript call, and the
    TracerWarnings of library code (the parity check is what proves the trace right)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


@contextmanager
def graph_mode() -> Iterator[None]:
    """Inference mode, TorchScript's simple executor, no deprecation noise.

    TorchScript's profiling executor re-specializes a graph for every new input shape, and
    dynamic batching (and packed modalities) make each batch a new shape: unoptimized, every
    shape runs at the speed of the kernels it calls from its first batch on, instead of paying
    profiling runs per shape.
    """
    with torch.inference_mode(), torch.jit.optimized_execution(False), quiet_jit():
        yield
