"""The ``torch-export`` target: ``torch.export`` with a free batch dimension, compiled ahead of
time by AOTInductor into one ``.pt2`` package (the successor of TorchScript upstream).

The package is C++ compiled for this CPU (it needs a C++ compiler at export time, and runs
with libtorch alone, through ``torch._inductor.aoti_load_package`` in Python or
``AOTIModelPackageLoader`` in C++).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

PACKAGE_FILE = "model.pt2"
MAX_BATCH = 4096


class TupleOutputs(nn.Module):
    """Returns the ensemble's outputs as a plain tuple (AOTInductor serialises no NamedTuple).

    Args:
        model: The ensemble (or its precision wrapper).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Args: the ensemble's inputs. Returns (scores, modality_scores, measurements)."""
        return tuple(self.model(*inputs))


def export_program(
    module: nn.Module,
    example_inputs: Sequence[Tensor],
    lengths: Sequence[tuple[int, str, int]] = (),
) -> Any:
    """``torch.export`` the module with dim 0 of every input free (one shared batch size),
    and dim 1 of the length-bucketed inputs free up to their longest.

    Args:
        module: The ensemble, in eval mode.
        example_inputs: One batch of inputs (batch size >= 2, so it is not specialised).
        lengths: ``(input position, dimension name, longest)`` per length-bucketed input;
            inputs sharing a name share the length (token ids and their mask).

    Returns:
        The ``torch.export.ExportedProgram``.
    """
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes: list[dict[int, Any]] = [{0: batch} for _ in example_inputs]
    dims: dict[str, Any] = {}
    for position, name, longest in lengths:
        # min 2: a text is at least [CLS] [SEP]; 0 and 1 would be specialised anyway
        dims.setdefault(name, torch.export.Dim(name, min=2, max=longest))
        shapes[position] = {0: batch, 1: dims[name]}
    with torch.no_grad():
        return torch.export.export(
            TupleOutputs(module).eval(),
            tuple(example_inputs),
            dynamic_shapes=(tuple(shapes),),
            strict=False,
        )


@dataclass(frozen=True)
class ExportedPackage:
    """An AOTInductor package, held in memory until saved.

    Attributes:
        data: The ``.pt2`` file's bytes.
        compile_seconds: How long ``torch.export`` plus AOTInductor took.
    """

    data: bytes
    compile_seconds: float

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.data)

    def load(self) -> Any:
        """The compiled model: call it with the graph inputs; returns a list of tensors."""
        return torch._inductor.aoti_load_package(io.BytesIO(self.data))


def export_package(
    module: nn.Module,
    example_inputs: Sequence[Tensor],
    lengths: Sequence[tuple[int, str, int]] = (),
) -> ExportedPackage:
    """Export and AOT-compile ``module`` into a ``.pt2`` package with a free batch dimension
    and free bucketed lengths (see :func:`export_program`)."""
    start = time.perf_counter()
    program = export_program(module, example_inputs, lengths)
    buffer = io.BytesIO()
    torch._inductor.aoti_compile_and_package(program, package_path=buffer)
    seconds = time.perf_counter() - start
    log.info("torch.export + AOTInductor: %.1f s", seconds)
    return ExportedPackage(buffer.getvalue(), seconds)


def load_package(path: str | Path) -> Any:
    """Load a ``.pt2`` package written by :meth:`ExportedPackage.save` (compiled for the CPU)."""
    return torch._inductor.aoti_load_package(str(path))
