"""Trace the whole ensemble into ONE TorchScript graph and check it against eager.

The graph is traced at one batch size from inputs built from the input spec; the batch
dimension stays free (every size is computed from ``aten::size``), which the parity check
proves by running both at other sizes on fresh random inputs and on real prepared ads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from export.artifact import OUTPUT_NAMES
from export.runtime import quiet_jit

log = logging.getLogger(__name__)

TRACE_BATCH_SIZE = 3  # with mixed modalities, every packed input has 2 rows of 3
PARITY_BATCH_SIZES = (1, 2, 7, 32)
FP32_TOLERANCE = 1e-4

InputsAt = Callable[[int], Sequence[Tensor]]


class ParityError(RuntimeError):
    """An exported graph whose outputs differ from eager beyond the tolerance."""


def trace_graph(module: nn.Module, example_inputs: Sequence[Tensor]) -> torch.jit.ScriptModule:
    """Trace ``module`` (in eval mode, without autograd) into one TorchScript graph.

    Args:
        module: The ensemble (or its precision wrapper): ``forward(*inputs)`` returning a
            tuple of tensors.
        example_inputs: One batch of its inputs, batch first.

    Returns:
        The traced module, in eval mode.
    """
    module.eval()
    with torch.no_grad(), quiet_jit():
        traced = torch.jit.trace(module, tuple(example_inputs), check_trace=False)
    return traced.eval()


def save_graph(graph: torch.jit.ScriptModule, path: Any) -> None:
    """``torch.jit.save`` without the deprecation noise."""
    with quiet_jit():
        torch.jit.save(graph, str(path))


def max_abs_diffs(expected: Sequence[Tensor], actual: Sequence[Tensor]) -> dict[str, float]:
    """Largest absolute difference of each output (``scores``, ``modality_scores``, ...)."""
    diffs = {}
    for name, want, got in zip(OUTPUT_NAMES, expected, actual, strict=True):
        if want.shape != got.shape:
            raise ParityError(f"{name}: shape {tuple(got.shape)} != eager {tuple(want.shape)}")
        diff = (want.float() - got.float()).abs()
        diffs[name] = float(diff.max()) if diff.numel() else 0.0
    return diffs


def check_parity(
    eager: Callable[..., Sequence[Tensor]],
    graph: Callable[..., Sequence[Tensor]],
    inputs: Mapping[str, InputsAt],
    *,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float = FP32_TOLERANCE,
) -> dict[str, Any]:
    """Run eager and graph on the same inputs at several batch sizes; compare every output.

    Args:
        eager: The eager module.
        graph: The exported graph.
        inputs: Input kind (``"random"``, ``"real"``) -> batch size -> graph inputs.
        batch_sizes: Batch sizes to check (the graph was traced at one).
        tolerance: Largest accepted absolute difference.

    Returns:
        The report: ``tolerance``, ``batch_sizes``, one check per (kind, batch size) with the
        max abs diff of each output, the overall ``max_abs_diff`` and ``passed``.

    Raises:
        ParityError: When an output's shape differs or a difference exceeds ``tolerance``.
    """
    checks: list[dict[str, Any]] = []
    worst_of: list[float] = []
    with torch.no_grad(), quiet_jit():
        for kind, make in inputs.items():
            for size in batch_sizes:
                batch = tuple(make(size))
                diffs = max_abs_diffs(eager(*batch), graph(*batch))
                checks.append({"inputs": kind, "batch_size": size, **diffs})
                worst_of.append(max(diffs.values()))
                log.debug("parity %s batch %d: %s", kind, size, diffs)
    worst = max(worst_of, default=0.0)
    report = {
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "max_abs_diff": worst,
        "passed": worst <= tolerance,
        "checks": checks,
    }
    if worst > tolerance:
        bad = [c for c, w in zip(checks, worst_of, strict=True) if w > tolerance]
        raise ParityError(f"exported graph differs from eager by {worst:.3g} > {tolerance}: {bad}")
    log.info(
        "parity vs eager: max abs diff %.3g over batch sizes %s (%s)",
        worst,
        list(batch_sizes),
        ", ".join(inputs),
    )
    return report
