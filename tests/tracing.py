"""Trace a module, save the graph and load it back: what every export round trip does."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def trace_save_load(module: nn.Module, example: Sequence[Tensor]) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` on ``example``, ``torch.jit.save`` to memory, ``torch.jit.load``."""
    traced = torch.jit.trace(module, tuple(example), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)
