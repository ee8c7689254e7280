"""Export benchmark: eager vs TorchScript vs 16-bit graphs, in one run.

For each model (the embedded default, and the full multimodal config with untrained heads)
and each batch size: items/s and p50 / p99 latency of every variant, with its parity against
eager fp32 on the calibration set (generated sample ads + random inputs) beside it: the max
|score difference| and the lowest per-policy decision agreement.

    python -m benchmarks.export_bench                              # everything (minutes)
    python -m benchmarks.export_bench --configs default --batches 1,16 --budget 2
    python -m benchmarks.export_bench --variants traced,bf16 --batches 1,2,4,8,16,32,64,128 \
        --json batch_sweep                                         # the offline batch sweep
    python -m benchmarks.export_bench --device cuda --arch .bench_arch ...   # on a GPU
    python -m benchmarks.export_bench --compare A.json B.json --json b_vs_a  # no run: B / A

Per variant, the knee of the batch sweep: the first batch size whose throughput grew less than
10 % over the previous one while its p50 latency rose (larger batches only add latency). The
goals: bf16 at least 1.5x the traced fp32 throughput (best batch of each) with decision
agreement >= 99.5 % on the calibration set.

``--arch DIR`` builds each config from ``DIR/CONFIG`` (written there first when missing: the
config, the encoders' Hugging Face configs and tokenizers, the heads' weights), so the encoders
get random weights: for a machine without the MiniLM package. Timing does not depend on the
weights' values; parity then compares random models (still a test of the 16-bit graphs).

A cell whose single call would exceed ``--max-call`` seconds (estimated from the previous
batch size, or from one item first) is skipped and shown as such; a variant whose one-item
call already exceeds it gets no parity numbers either (fp16 R3D: about a minute an item on
a CPU without fp16 convolution kernels). Timings on a shared machine are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import (
    GOALS_HEADER,
    Report,
    goal_row,
    machine_line,
    markdown_table,
    percentile,
    synchronizer,
)
from ensemble.batch import AdPreparer
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import CONFIG_FILE, bundle_encoder_files, save_pretrained
from ensemble.scoring import DEFAULT_DIR
from export.calibration import calibration_ads, random_batch
from export.exporter import CheckInputs, load_model
from export.precision import PrecisionPlan, make_plan, policy_parity, with_precision
from export.runtime import graph_mode
from export.trace import trace_graph

log = logging.getLogger("export_bench")

CONFIGS = {"default": str(DEFAULT_DIR), "full": "full"}
# No torch-export: its graph takes the dense layout (one batch size for every input), and every
# variant here is timed on the same packed batch; tests/export/test_torch_export.py checks it.
VARIANTS = ("eager", "traced", "bf16", "bf16-autocast", "fp16")
HEADER = (
    "config",
    "variant",
    "batch",
    "items/s",
    "p50 ms",
    "p99 ms",
    "runs",
    "max|dscore|",
    "agree",
    "note",
)
KNEE_GAIN = 0.10
WARMUP_HELP = (
    "untimed calls per cell (3 on a GPU: TorchScript re-optimizes a graph over its first "
    "calls at each new input shape)"
)
BF16_SPEEDUP, MIN_AGREEMENT = 1.5, 0.995
Runner = Callable[..., Sequence[Tensor]]


@dataclass
class Cell:
    """One measured (or skipped) table cell."""

    config: str
    variant: str
    batch: int
    latencies: list[float]
    note: str = ""

    def row(self, parity: tuple[float, float]) -> dict[str, Any]:
        """The cell as a JSON record (timings None when skipped), parity beside it."""
        timing: dict[str, Any] = dict.fromkeys(("items_per_s", "p50_ms", "p99_ms"))
        if self.latencies:
            p50 = statistics.median(self.latencies)
            timing = {
                "items_per_s": self.batch / p50,
                "p50_ms": p50 * 1e3,
                "p99_ms": percentile(self.latencies, 0.99) * 1e3,
            }
        diff, agreement = parity
        return {
            "config": self.config,
            "variant": self.variant,
            "batch": self.batch,
            **timing,
            "runs": len(self.latencies),
            "max_abs_diff": diff,
            "agreement": agreement,
            "note": self.note,
        }


def table_row(row: dict[str, Any]) -> list[Any]:
    """A :meth:`Cell.row` record as a row of ``HEADER``."""
    timing = [row[k] if row[k] is not None else "-" for k in ("items_per_s", "p50_ms", "p99_ms")]
    return [
        row["config"],
        row["variant"],
        row["batch"],
        *timing,
        row["runs"],
        f"{row['max_abs_diff']:.2e}",
        f"{row['agreement']:.4f}",
        row["note"],
    ]


def build_variants(
    model: AdPolicyEnsemble,
    names: Sequence[str],
    example: Sequence[Tensor],
    device: torch.device,
) -> dict[str, Runner]:
    """The callables to time: eager, TorchScript fp32 / bf16 / fp16.

    ``model`` is on the CPU, where the 16-bit plans check that each encoder runs in 16 bits;
    then it moves to ``device``, and so does every variant; ``example``
    must be there already.
    """
    plans: dict[str, PrecisionPlan] = {}
    for name in names:
        if name in ("bf16", "fp16"):
            plans[name] = make_plan(model, name, "all", method="weights")
        elif name == "bf16-autocast":
            plans[name] = make_plan(model, "bf16", "all", method="autocast")
    model.to(device)
    runners: dict[str, Runner] = {}
    for name in names:
        start = time.perf_counter()
        if name == "eager":
            runners[name] = model
        elif name == "traced":
            runners[name] = trace_graph(model, example)
        elif name in plans:
            # the copy's own buffers (policy selections) are made on the CPU
            reduced = with_precision(model, plans[name]).to(device)
            runners[name] = trace_graph(reduced, example)
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
    runners: dict[str, Runner],
    inputs: Sequence[Tensor],
    budget: float,
    max_runs: int,
    sync: Callable[[], None],
    warmup: int,
) -> dict[str, list[float]]:
    """Latencies of every runner on the same inputs, ``warmup`` untimed calls each, then
    rounds calling each runner once, so that load from other processes hits all variants
    alike; rounds go on until ``budget`` s per runner or ``max_runs``, at least two. ``sync``
    waits for the device after each call."""
    if not runners:
        return {}
    for runner in runners.values():
        for _ in range(warmup):
            runner(*inputs)
    sync()
    latencies: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    while len(next(iter(latencies.values()))) < 2 or (
        time.perf_counter() - start < budget * len(runners)
        and len(next(iter(latencies.values()))) < max_runs
    ):
        for name, runner in runners.items():
            began = time.perf_counter()
            runner(*inputs)
            sync()
            latencies[name].append(time.perf_counter() - began)
    return latencies


def architecture(name: str, folder: Path) -> AdPolicyEnsemble:
    """Config ``name`` built from ``folder/name`` with random encoder weights; the folder is
    written first when missing (config, Hugging Face configs and tokenizers, heads)."""
    path = folder / name
    if not (path / CONFIG_FILE).is_file():
        model = load_model(CONFIGS[name])
        assert model.config is not None
        model.config = bundle_encoder_files(model.config, path)
        save_pretrained(model, path, weights="heads")
    return load_model(path)


def bench_config(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant of one model at every batch size, as :meth:`Cell.row` records."""
    model = architecture(name, args.arch) if args.arch else load_model(CONFIGS[name])
    assert model.config is not None
    preparer = AdPreparer(model.config)
    inputs = CheckInputs(model, calibration_ads(preparer), preparer, args.random_items)
    device = torch.device(args.device)
    sync = synchronizer(device)

    def on_device(batch: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(t.to(device) for t in batch)

    calibration = [on_device(batch) for batch in inputs.calibration()]
    cells: dict[tuple[str, int], Cell] = {}
    nan = (float("nan"), float("nan"))
    with graph_mode():
        runners = build_variants(model, args.variants, on_device(inputs.example()), device)
        reference = [model(*batch)[0] for batch in calibration]
        # variant -> (batch, p50) of its last cell: one item first, to skip hopeless variants
        one_item = on_device(inputs.example(1))
        last = {v: (1, single_call(r, one_item, sync)) for v, r in runners.items()}
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
            data = on_device(random_batch(model.example_inputs, batch, seed=batch))
            for variant, latencies in time_round_robin(
                active, data, args.budget, args.max_runs, sync, args.warmup
            ).items():
                cells[variant, batch].latencies = latencies
                last[variant] = (batch, statistics.median(latencies))
                log.info("%s", table_row(cells[variant, batch].row(parity[variant])))
    return [cells[v, b].row(parity[v]) for v in runners for b in args.batches]


def single_call(runner: Runner, inputs: Sequence[Tensor], sync: Callable[[], None]) -> float:
    """Seconds of one call (the first: it also warms the graph up)."""
    start = time.perf_counter()
    runner(*inputs)
    sync()
    return time.perf_counter() - start


def knee(batches: Sequence[int], items_per_s: Sequence[float], p50: Sequence[float]) -> int | None:
    """Index of the first batch size whose throughput grew less than ``KNEE_GAIN`` over the
    previous one while its p50 latency rose; None while throughput keeps growing."""
    for i in range(1, len(batches)):
        if items_per_s[i] < items_per_s[i - 1] * (1 + KNEE_GAIN) and p50[i] > p50[i - 1]:
            return i
    return None


def summarize(rows: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Per config and variant: the best batch and the knee; the bf16 goals. As Markdown
    sections and as JSON."""
    knees, goals, facts = [], [], []
    summary: dict[str, Any] = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        best: dict[str, dict[str, Any]] = {}
        for variant in dict.fromkeys(r["variant"] for r in rows if r["config"] == config):
            timed = [
                r
                for r in rows
                if r["config"] == config and r["variant"] == variant and r["items_per_s"]
            ]
            if not timed:
                continue
            best[variant] = max(timed, key=lambda r: r["items_per_s"])
            at = knee(
                [r["batch"] for r in timed],
                [r["items_per_s"] for r in timed],
                [r["p50_ms"] for r in timed],
            )
            knee_text = (
                f"{timed[at]['batch']} (x{timed[at]['items_per_s'] / timed[at - 1]['items_per_s']:.2f} "
                f"items/s over {timed[at - 1]['batch']}, p50 {timed[at - 1]['p50_ms']:.1f} -> "
                f"{timed[at]['p50_ms']:.1f} ms)"
                if at is not None
                else f"none up to {timed[-1]['batch']}"
            )
            knees.append(
                [config, variant, best[variant]["batch"], best[variant]["items_per_s"], knee_text]
            )
            summary[f"{config}/{variant}"] = {
                "best_batch": best[variant]["batch"],
                "best_items_per_s": best[variant]["items_per_s"],
                "knee_batch": timed[at]["batch"] if at is not None else None,
            }
        if "traced" in best and "bf16" in best:
            speedup = best["bf16"]["items_per_s"] / best["traced"]["items_per_s"]
            agreement = best["bf16"]["agreement"]
            goals.append(
                goal_row(
                    f"{config}: bf16 / fp32 traced items/s (best batch)", speedup, BF16_SPEEDUP
                )
            )
            goals.append(goal_row(f"{config}: bf16 decision agreement", agreement, MIN_AGREEMENT))
            summary[f"{config}/bf16_speedup"] = speedup
            by_batch = {
                r["batch"]: r for r in rows if r["config"] == config and r["variant"] == "bf16"
            }
            facts += [
                [config, r["batch"], by_batch[r["batch"]]["items_per_s"] / r["items_per_s"]]
                for r in rows
                if r["config"] == config
                and r["variant"] == "traced"
                and r["items_per_s"]
                and by_batch[r["batch"]]["items_per_s"]
            ]
    sections = [
        "Best batch and knee (first batch adding < 10 % items/s while p50 rises):\n\n"
        + markdown_table(("config", "variant", "best batch", "items/s", "knee"), knees)
    ]
    if facts:
        sections.append(markdown_table(("config", "batch", "bf16 / fp32 items/s"), facts))
    if goals:
        sections.append(markdown_table(GOALS_HEADER, goals))
    return sections, summary


def compare(paths: Sequence[Path]) -> tuple[list[str], dict[str, Any]]:
    """Items/s of a second results file over a first one, cell by cell (same config, variant
    and batch); the two machine lines head the table, as they were measured apart."""
    first, second = (json.loads(path.read_text()) for path in paths)
    timed = {(r["config"], r["variant"], r["batch"]): r for r in first["rows"] if r["items_per_s"]}
    ratios = [
        [
            *key,
            timed[key]["items_per_s"],
            r["items_per_s"],
            r["items_per_s"] / timed[key]["items_per_s"],
        ]
        for r in second["rows"]
        if r["items_per_s"] and (key := (r["config"], r["variant"], r["batch"])) in timed
    ]
    header = ("config", "variant", "batch", "items/s A", "items/s B", "B / A")
    machines = "\n".join(
        f"- {label}: `{path.name}`, {machine_line(data['machine'])}"
        for label, path, data in zip("AB", paths, (first, second), strict=True)
    )
    text = f"Measured on different machines, in different runs:\n\n{machines}\n\n" + markdown_table(
        header, ratios
    )
    return [text], {
        "files": [str(p) for p in paths],
        "rows": [dict(zip(header, r, strict=True)) for r in ratios],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="default,full", help=f"of {sorted(CONFIGS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {VARIANTS}")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timed calls per cell")
    parser.add_argument("--max-runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=1, help=WARMUP_HELP)
    parser.add_argument("--max-call", type=float, default=30.0, help="skip cells slower than this")
    parser.add_argument("--random-items", type=int, default=8, help="random items in calibration")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--arch", type=Path, help="random encoder weights, configs under ARCH")
    parser.add_argument("--json", default="export_bench", help="results/NAME.md and NAME.json")
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("A", "B"), help="no run: B's items/s over A's"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        # TorchScript's TensorExpr fuser fails on these graphs on CUDA ("Global alloc not
        # supported yet", seen on an H100); the server runs graphs unoptimized anyway.
        torch._C._jit_set_texpr_fuser_enabled(False)
    args.variants = args.variants.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.compare:
        sections, payload = compare(args.compare)
    else:
        rows = []
        for name in args.configs.split(","):
            rows += bench_config(name, args)
        weights = (
            "random encoder weights (timing does not depend on them)"
            if args.arch
            else "real weights"
        )
        table = (
            f"Device {args.device}, {weights}, mixed-modality packed batches:\n\n"
            + markdown_table(HEADER, [table_row(r) for r in rows])
        )
        sections, summary = summarize(rows)
        sections = [table, *sections]
        payload = {"rows": rows, "summary": summary}
    report = Report("export_bench", args.json)
    for section in sections:
        report.print(section + "\n")
    report.save(payload)


if __name__ == "__main__":
    main()
