"""Export benchmark: eager vs TorchScript vs 16-bit graphs vs torch.export, in one run.

For each model (the embedded default, and the full multimodal config with untrained heads)
and each batch size: items/s and p50 / p99 latency of every variant, with its parity against
eager fp32 on the calibration set (generated sample ads + random inputs) beside it: the max
|score difference| and the lowest per-policy decision agreement.

    python -m benchmarks.export_bench                              # everything (minutes)
    python -m benchmarks.export_bench --configs default --batches 1,16 --budget 2

A cell whose single call would exceed ``--max-call`` seconds (estimated from the previous
batch size, or from one item first) is skipped and shown as such; a variant whose one-item
call already exceeds it gets no parity numbers either (fp16 R3D: about a minute an item on
a CPU without fp16 convolution kernels). Timings on a shared machine are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmarks.common import machine_line, percentile
from ensemble.batch import AdPreparer
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import DEFAULT_DIR
from export.calibration import calibration_ads, random_batch
from export.exporter import CheckInputs, load_model
from export.precision import make_plan, policy_parity, with_precision
from export.torch_export import export_package
from export.trace import quiet_jit, trace_graph

log = logging.getLogger("export_bench")

CONFIGS = {"default": str(DEFAULT_DIR), "full": "full"}
VARIANTS = ("eager", "traced", "bf16", "bf16-autocast", "fp16", "torch-export")
Runner = Callable[..., Sequence[Tensor]]


@dataclass
class Cell:
    """One measured (or skipped) table cell."""

    config: str
    variant: str
    batch: int
    latencies: list[float]
    note: str = ""

    def row(self, parity: tuple[float, float]) -> str:
        diff, agreement = parity
        if not self.latencies:
            timing = f"{'-':>9} {'-':>9} {'-':>9} {0:>4}"
        else:
            p50 = statistics.median(self.latencies)
            p99 = percentile(self.latencies, 0.99)
            timing = f"{self.batch / p50:>9.1f} {p50 * 1e3:>9.1f} {p99 * 1e3:>9.1f} {len(self.latencies):>4}"
        return (
            f"{self.config:<8} {self.variant:<14} {self.batch:>5} {timing} "
            f"{diff:>10.2e} {agreement:>8.3f}  {self.note}"
        )


def build_variants(
    model: AdPolicyEnsemble, names: Sequence[str], example: Sequence[Tensor]
) -> dict[str, Runner]:
    """The callables to time: eager, TorchScript fp32 / bf16 / fp16, torch.export (AOT)."""
    runners: dict[str, Runner] = {}
    for name in names:
        start = time.perf_counter()
        if name == "eager":
            runners[name] = model
        elif name == "traced":
            runners[name] = trace_graph(model, example)
        elif name in ("bf16", "fp16"):
            plan = make_plan(model, name, "all", method="weights")
            runners[name] = trace_graph(with_precision(model, plan), example)
        elif name == "bf16-autocast":
            plan = make_plan(model, "bf16", "all", method="autocast")
            runners[name] = trace_graph(with_precision(model, plan), example)
        elif name == "torch-export":
            runners[name] = export_package(model, example).load()
        else:
            raise ValueError(f"unknown variant {name!r}; known: {VARIANTS}")
        log.info("%s ready in %.1f s", name, time.perf_counter() - start)
    return runners


def parity_vs_eager(
    config: ModelConfig,
    runner: Runner,
    calibration: Sequence[Sequence[Tensor]],
    reference: list[Tensor],
) -> tuple[float, float]:
    """Max |score diff| and lowest per-policy decision agreement against eager fp32."""
    scores = [runner(*batch)[0] for batch in calibration]
    parity = policy_parity(config, reference, scores)
    return (
        max(p["max_abs_diff"] for p in parity.values()),
        min(p["agreement"] for p in parity.values()),
    )


def time_round_robin(
    runners: dict[str, Runner], inputs: Sequence[Tensor], budget: float, max_runs: int
) -> dict[str, list[float]]:
    """Latencies of every runner on the same inputs, one warm-up each, then rounds calling
    each runner once, so that load from other processes hits all variants alike; rounds go
    on until ``budget`` s per runner or ``max_runs``, at least two."""
    if not runners:
        return {}
    for runner in runners.values():
        runner(*inputs)
    latencies: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    while len(next(iter(latencies.values()))) < 2 or (
        time.perf_counter() - start < budget * len(runners)
        and len(next(iter(latencies.values()))) < max_runs
    ):
        for name, runner in runners.items():
            began = time.perf_counter()
            runner(*inputs)
            latencies[name].append(time.perf_counter() - began)
    return latencies


def bench_config(name: str, args: argparse.Namespace) -> list[str]:
    """Every variant of one model at every batch size, as table rows (variant by variant)."""
    model = load_model(CONFIGS[name])
    assert model.config is not None
    preparer = AdPreparer(model.config)
    inputs = CheckInputs(model, calibration_ads(preparer), preparer, args.random_items)
    calibration = inputs.calibration()
    cells: dict[tuple[str, int], Cell] = {}
    nan = (float("nan"), float("nan"))
    with torch.inference_mode(), quiet_jit():
        runners = build_variants(model, args.variants, inputs.example())
        reference = [model(*batch)[0] for batch in calibration]
        # variant -> (batch, p50) of its last cell: one item first, to skip hopeless variants
        last = {v: (1, single_call(r, inputs.example(1))) for v, r in runners.items()}
        parity = {
            variant: parity_vs_eager(model.config, runner, calibration, reference)
            if last[variant][1] <= args.max_call
            else nan
            for variant, runner in runners.items()
        }
        for batch in args.batches:
            active = {}
            for variant, runner in runners.items():
                cells[variant, batch] = Cell(name, variant, batch, [])
                estimate = last[variant][1] * batch / last[variant][0]
                if estimate > args.max_call:
                    cells[variant, batch].note = f"skipped: ~{estimate:.0f} s a call"
                else:
                    active[variant] = runner
            data = random_batch(model.example_inputs, batch, seed=batch)
            for variant, latencies in time_round_robin(
                active, data, args.budget, args.max_runs
            ).items():
                cells[variant, batch].latencies = latencies
                last[variant] = (batch, statistics.median(latencies))
                log.info("%s", cells[variant, batch].row(parity[variant]))
    return [cells[v, b].row(parity[v]) for v in runners for b in args.batches]


def single_call(runner: Runner, inputs: Sequence[Tensor]) -> float:
    """Seconds of one call (the first: it also warms the graph up)."""
    start = time.perf_counter()
    runner(*inputs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="default,full", help=f"of {sorted(CONFIGS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {VARIANTS}")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timed calls per cell")
    parser.add_argument("--max-runs", type=int, default=50)
    parser.add_argument("--max-call", type=float, default=30.0, help="skip cells slower than this")
    parser.add_argument("--random-items", type=int, default=8, help="random items in calibration")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.variants = args.variants.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    for name in args.configs.split(","):
        rows += bench_config(name, args)
    print(machine_line())
    print(
        f"{'config':<8} {'variant':<14} {'batch':>5} {'items/s':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'runs':>4} {'max|dscore|':>10} {'agree':>8}"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
