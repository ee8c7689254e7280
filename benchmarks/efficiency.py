"""Efficiency: FLOPs of one forward, this machine's GEMM FLOP/s, and where the time goes.

For each model (the embedded default; the full multimodal config, untrained heads), on batches
where every ad has every modality:

- FLOPs per item of one forward, in total and per encoder and head (torch.utils.flop_counter).
  FLOPs are linear in the batch size (every operator works per row), so two counted
  forwards, at 1 and 2 items, give every batch size exactly.
- the traced fp32 graph's items/s and achieved FLOP/s at each of ``--batches`` (bigger ones
  are skipped once a call would take over ``--max-call`` s), the best batch marked;
- this machine's GEMM FLOP/s in the same run (``torch.mm``, square, fp32 and bf16, best of
  ``--repeat``), and the goal: the model's forward at >= 50 % of the fp32 GEMM FLOP/s;
- where the time goes at the best batch: one eager forward under torch.profiler, with a
  ``record_function`` range around every encoder and head (opened and closed by forward
  hooks; a traced graph has no module boundaries left to hook).

    python -m benchmarks.efficiency [--configs default,full] [--batches 1,4,16,64] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    GOALS_HEADER,
    Report,
    best,
    goal_row,
    markdown_table,
    synchronizer,
)
from benchmarks.export_bench import CONFIGS, WARMUP_HELP, architecture, time_round_robin
from ensemble.model import AdPolicyEnsemble
from export.calibration import random_batch
from export.exporter import load_model
from export.runtime import graph_mode
from export.trace import trace_graph

log = logging.getLogger("efficiency")

GEMM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GOAL_SHARE = 0.5


def gemm_flops(
    sizes: Sequence[int],
    repeat: int,
    device: torch.device,
    sync: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, Any]]:
    """FLOP/s of ``torch.mm`` on random square matrices: the fastest of ``repeat`` products
    (after one warm-up) per dtype and size, timed by ``clock``."""
    rows: list[dict[str, Any]] = []
    for name, dtype in GEMM_DTYPES.items():
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            torch.mm(a, b)
            sync()

            def product(a: Tensor = a, b: Tensor = b) -> None:
                torch.mm(a, b)
                sync()

            seconds = best(product, repeat, clock)
            rows.append({"dtype": name, "n": n, "flop_per_s": 2 * n**3 / seconds})
            log.info("GEMM %s %d: %.1f GFLOP/s", name, n, rows[-1]["flop_per_s"] / 1e9)
    return rows


def dense_batch(model: AdPolicyEnsemble, batch: int, device: torch.device) -> tuple[Tensor, ...]:
    """Random inputs for ``batch`` ads that all have every modality, on ``device``."""
    data = random_batch(model.example_inputs, batch, seed=batch, dense=True)
    return tuple(t.to(device) for t in data)


def module_labels(model: AdPolicyEnsemble) -> list[str]:
    """``encoders.KEY`` and ``heads.KEY`` of every encoder and head: the parts timed and
    counted (their submodule names)."""
    return [f"{kind}.{key}" for kind in ("encoders", "heads") for key in model.keys]


def count_flops(model: AdPolicyEnsemble, inputs: Sequence[Tensor]) -> dict[str, float]:
    """FLOPs of one eager forward: ``total`` and per encoder / head (``encoders.KEY``)."""
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    counts = counter.get_flop_counts()
    root = type(model).__name__  # the counter's name of the top module
    flops = {"total": float(sum(counts.get(root, {}).values()))}
    for label in module_labels(model):
        flops[label] = float(sum(counts.get(f"{root}.{label}", {}).values()))
    return flops


def profile_modules(
    model: AdPolicyEnsemble, inputs: Sequence[Tensor], sync: Callable[[], None]
) -> dict[str, float]:
    """Milliseconds of one eager forward (``forward``) and of every encoder and head in it."""
    ranges: dict[str, Any] = {}
    handles = []

    def opener(label: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            ranges[label] = record_function(label)
            ranges[label].__enter__()

        return hook

    def closer(label: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            sync()
            ranges.pop(label).__exit__(None, None, None)

        return hook

    for label in module_labels(model):
        module = model.get_submodule(label)
        handles.append(module.register_forward_pre_hook(opener(label)))
        handles.append(module.register_forward_hook(closer(label)))
    try:
        model(*inputs)  # warm-up
        sync()
        with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("forward"):
            model(*inputs)
            sync()
    finally:
        for handle in handles:
            handle.remove()
    wanted = {"forward", *module_labels(model)}
    return {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key in wanted}


def bench_config(name: str, args: argparse.Namespace, peak: float) -> tuple[list[str], Any]:
    """FLOPs, achieved FLOP/s per batch size and the time split of one model: Markdown
    sections and the JSON record."""
    model = architecture(name, args.arch) if args.arch else load_model(CONFIGS[name])
    device = torch.device(args.device)
    sync = synchronizer(device)
    with graph_mode():
        model.to(device)
        pair = dense_batch(model, 2, device)
        one, two = count_flops(model, dense_batch(model, 1, device)), count_flops(model, pair)
        per_item = {k: two[k] - one[k] for k in one}

        def flops_at(batch: int, key: str = "total") -> float:
            return one[key] + per_item[key] * (batch - 1)

        graph = trace_graph(model, pair)
        timings: list[dict[str, Any]] = []
        for batch in args.batches:
            if timings and timings[-1]["p50_s"] * batch / timings[-1]["batch"] > args.max_call:
                log.info("%s: batch %d skipped (over --max-call)", name, batch)
                break
            data = dense_batch(model, batch, device)
            latencies = time_round_robin(
                {"traced": graph}, data, args.budget, args.max_runs, sync, args.warmup
            )
            p50 = statistics.median(latencies["traced"])
            timings.append({"batch": batch, "p50_s": p50, "flop_per_s": flops_at(batch) / p50})
            log.info("%s batch %d: %.1f GFLOP/s", name, batch, timings[-1]["flop_per_s"] / 1e9)
        top = max(timings, key=lambda t: t["flop_per_s"])
        split = profile_modules(model, dense_batch(model, top["batch"], device), sync)
    model.to("cpu")
    achieved = [
        [
            name,
            t["batch"],
            t["batch"] / t["p50_s"],
            t["p50_s"] * 1e3,
            flops_at(t["batch"]) / t["batch"] / 1e9,
            t["flop_per_s"] / 1e9,
            t["flop_per_s"] / peak,
            "best" if t is top else "",
        ]
        for t in timings
    ]
    batch, forward_ms = top["batch"], split["forward"]
    modules = [k for k in split if k != "forward"]
    where = [
        [
            name,
            k,
            split[k],
            100 * split[k] / forward_ms,
            flops_at(batch, k) / batch / 1e9,
            100 * flops_at(batch, k) / flops_at(batch),
            flops_at(batch, k) / (split[k] / 1e3) / 1e9,
        ]
        for k in sorted(modules, key=lambda k: -split[k])
    ]
    glue = forward_ms - sum(split[k] for k in modules)
    where.append([name, "fusion, packing, rest", glue, 100 * glue / forward_ms, "", "", ""])
    where.append(
        [
            name,
            "forward (eager)",
            forward_ms,
            100.0,
            flops_at(batch) / batch / 1e9,
            100.0,
            flops_at(batch) / (forward_ms / 1e3) / 1e9,
        ]
    )
    record = {
        "flops_batch_1": one,
        "flops_per_extra_item": per_item,
        "timings": timings,
        "best_batch": batch,
        "best_flop_per_s": top["flop_per_s"],
        "time_split_ms": split,
    }
    return [
        markdown_table(
            ("config", "batch", "items/s", "p50 ms", "GFLOP/item", "GFLOP/s", "of fp32 GEMM", ""),
            achieved,
        ),
        f"Where the time goes ({name}, eager, batch {batch}, every modality present; the FLOP "
        "counter counts matmuls and convolutions only, so elementwise work such as the flash "
        "analyzer's shows 0 FLOPs):\n\n"
        + markdown_table(
            ("config", "module", "ms", "% of forward", "GFLOP/item", "% of FLOPs", "GFLOP/s"),
            where,
        ),
    ], record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="default,full", help=f"of {sorted(CONFIGS)}")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of timed calls per batch"
    )
    parser.add_argument("--max-runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help=WARMUP_HELP)
    parser.add_argument("--max-call", type=float, default=10.0, help="no bigger batch past this")
    parser.add_argument("--gemm-sizes", default="1024,2048,4096")
    parser.add_argument("--repeat", type=int, default=3, help="GEMM products per size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument(
        "--arch", type=Path, help="random encoder weights, configs under ARCH (export_bench)"
    )
    parser.add_argument("--json", default="efficiency", help="results/NAME.md and NAME.json")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device(args.device)
    gemm = gemm_flops(
        [int(n) for n in args.gemm_sizes.split(",")], args.repeat, device, synchronizer(device)
    )
    peaks = {d: max(r["flop_per_s"] for r in gemm if r["dtype"] == d) for d in GEMM_DTYPES}
    sections = [
        f"GEMM on {args.device} (torch.mm, square n x n, best of {args.repeat}):\n\n"
        + markdown_table(
            ("dtype", "n", "GFLOP/s"), [[r["dtype"], r["n"], r["flop_per_s"] / 1e9] for r in gemm]
        )
    ]
    records, goals = {}, []
    for name in args.configs.split(","):
        tables, records[name] = bench_config(name, args, peaks["fp32"])
        sections += tables
        share = records[name]["best_flop_per_s"] / peaks["fp32"]
        goals.append(goal_row(f"{name}: traced fp32 forward / fp32 GEMM FLOP/s", share, GOAL_SHARE))
    sections.append(markdown_table(GOALS_HEADER, goals))
    report = Report("efficiency", args.json)
    for section in sections:
        report.print(section + "\n")
    report.save({"gemm": gemm, "gemm_peak_flop_per_s": peaks, "configs": records})


if __name__ == "__main__":
    main()
