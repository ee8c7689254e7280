"""Length buckets for text: throughput, forward efficiency, bf16 and parity, in one run.

The same texts are scored end to end (tokenize, collate, traced graph, rows) two ways with the
embedded default model's traced fp32 graph:

- ``padded-128``: every text padded to 128 tokens and ads batched as they come (the behaviour
  before buckets: ``buckets: [128]``, ``sort_window 1``);
- ``bucketed``: unpadded tokenization, each batch padded to the smallest of 16/24/32/48/64/96/128 that
  holds its longest text, ``sort_window`` batches sorted by bucket before they are cut.

Times are CPU seconds of this process (``time.process_time``; the forward alone:
``time.thread_time`` around each call) with one torch thread, so that other jobs on a shared
machine change them little; items/s is per CPU-second, i.e. what one dedicated core does.

Texts follow ``benchmarks.traffic_set``'s two profiles (half like Davidson tweets, median 35
wordpieces, half like short ad copy, median 14). Printed: items/s per batch size for both (the
modes alternate per batch size, so both see the same machine load), the knee, the forward's
share of this machine's fp32 GEMM rate (FLOPs counted on the batches actually run), bf16 vs
fp32 (forward time and decision agreement), and parity of bucketed vs padded scores on the
export calibration ads and on ``--holdout`` texts (the Davidson hold-out manifest, when given).

    python -m benchmarks.buckets [--texts 480] [--batches 1,8,32,64] [--holdout runs/davidson/test.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import GOALS_HEADER, goal_row, markdown_table, start
from benchmarks.efficiency import gemm_flops
from benchmarks.traffic_set import TEXT_PROFILES, text_of, token_length
from ensemble.batch import AdPreparer
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import from_pretrained
from ensemble.samples import sample_ads
from ensemble.scoring import DEFAULT_DIR, Scorer
from export.precision import make_plan, with_precision
from export.runtime import graph_mode
from export.trace import trace_graph

log = logging.getLogger("buckets")
PADDED = [128]
WORDS = [
    "sale",
    "shoes",
    "coffee",
    "delivery",
    "summer",
    "offer",
    "price",
    "hotel",
    "city",
    "book",
    "today",
    "free",
    "new",
    "fresh",
    "organic",
    "handmade",
    "family",
    "weekend",
    "tickets",
    "concert",
    "fitness",
    "studio",
    "classes",
    "local",
    "bakery",
]


class TimedGraph:
    """A graph that adds up the CPU seconds of its calls and keeps each batch's inputs."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.seconds = 0.0
        self.batches: list[tuple[Tensor, ...]] = []

    def __call__(self, *inputs: Tensor) -> Sequence[Tensor]:
        start = time.thread_time()
        with graph_mode():
            out = self.graph(*inputs)
        self.seconds += time.thread_time() - start
        self.batches.append(inputs)
        return out


def make_texts(count: int, tokenizer: Any, seed: int) -> list[dict[str, str]]:
    """``count`` ads, alternating the tweet and ad-copy length profiles."""
    rng = np.random.default_rng(seed)
    profiles = list(TEXT_PROFILES)
    return [
        {
            "id": f"t{i}",
            "text": text_of(token_length(profiles[i % 2], rng), WORDS, rng, tokenizer),
        }
        for i in range(count)
    ]


def with_buckets(config: ModelConfig, buckets: list[int]) -> ModelConfig:
    data = config.to_json()
    data["encoders"]["text"]["buckets"] = buckets
    return ModelConfig.from_json(data)


def scorer(
    graph: TimedGraph, model: AdPolicyEnsemble, buckets: list[int], batch: int, window: int
) -> Scorer:
    preparer = AdPreparer(with_buckets(model.config, buckets))
    return Scorer(
        graph,
        config=model.config,
        measurement_names=model.measurement_names,
        batch_size=batch,
        sort_window=window,
        preparer=preparer,
        workers=1,
    )


def run(
    graph: Any,
    model: AdPolicyEnsemble,
    ads: list[Any],
    buckets: list[int],
    batch: int,
    window: int = 1,
) -> dict[str, Any]:
    """Score ``ads`` end to end; items per CPU-second, forward CPU seconds, the batches run
    and the scores."""
    timed = TimedGraph(graph)
    start = time.process_time()
    scored = list(scorer(timed, model, buckets, batch, window).iter_scored(ads))
    seconds = time.process_time() - start
    scores = torch.stack([s.scores for s in scored if s.scores is not None])
    return {
        "items_per_s": len(ads) / seconds,
        "forward_s": timed.seconds,
        "batches": timed.batches,
        "scores": scores,
    }


def flops_of(model: AdPolicyEnsemble, batches: Sequence[Sequence[Tensor]]) -> float:
    """FLOPs of the eager model over the batches a run made (the graph does the same work)."""
    total = 0.0
    with torch.inference_mode():
        for batch in batches:
            with FlopCounterMode(display=False) as counter:
                model(*batch)
            total += counter.get_total_flops()
    return total


def parity(
    graph: Any, model: AdPolicyEnsemble, ads: list[Any], bucketed: list[int]
) -> dict[str, Any]:
    """Bucketed vs padded-128 scores of the same ads: max |diff| and decisions that differ."""
    thresholds = torch.tensor([p.threshold for p in model.config.policies])
    outs = []
    for buckets, window in ((bucketed, 4), (PADDED, 1)):
        s = scorer(TimedGraph(graph), model, buckets, 32, window)
        outs.append(torch.stack([x.scores for x in s.iter_scored(ads) if x.scores is not None]))
    ours, padded = outs
    return {
        "ads": len(ours),
        "max_abs_diff": float((ours - padded).abs().max()),
        "decisions_differing": int(((ours >= thresholds) != (padded >= thresholds)).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=480)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--batch1-texts", type=int, default=96, help="texts timed at batch 1")
    parser.add_argument("--holdout", type=Path, default=None, help="JSONL of ads with text")
    parser.add_argument("--holdout-texts", type=int, default=2000)
    parser.add_argument("--gemm-sizes", default="1024,2048")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a server worker)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--buckets", default="16,24,32,48,64,96,128", help="bucketed run: buckets")
    parser.add_argument("--window", type=int, default=8, help="bucketed run: sort window (batches)")
    args = parser.parse_args()
    report = start("buckets", args.threads)

    model = from_pretrained(DEFAULT_DIR).eval()
    preparer = AdPreparer(model.config)
    tokenizer = preparer.preparers["text"][0][1].tokenizer
    ads = make_texts(args.texts, tokenizer, args.seed)
    example = preparer.collate([preparer.prepare(a) for a in ads[:3]]).inputs
    fp32 = trace_graph(model, example)
    bf16_model = with_precision(model, make_plan(model, "bf16", "all", method="weights"))
    bf16 = trace_graph(bf16_model, example)

    bucketed = [int(b) for b in args.buckets.split(",")]
    for buckets in (PADDED, bucketed):  # first calls allocate; time what follows
        run(fp32, model, ads[:16], buckets, 8)
    rows: list[list[Any]] = []
    results: dict[str, dict[int, dict[str, Any]]] = {"padded-128": {}, "bucketed": {}}
    for batch in [int(b) for b in args.batches.split(",")]:
        subset = ads[: args.batch1_texts] if batch == 1 else ads
        for name, buckets, window in (
            ("padded-128", PADDED, 1),
            ("bucketed", bucketed, args.window),
        ):
            results[name][batch] = run(fp32, model, subset, buckets, batch, window)
            log.info("%s batch %d: %.1f items/s", name, batch, results[name][batch]["items_per_s"])
        base, ours = results["padded-128"][batch], results["bucketed"][batch]
        rows.append(
            [
                batch,
                base["items_per_s"],
                ours["items_per_s"],
                ours["items_per_s"] / base["items_per_s"],
                len(subset) / base["forward_s"],
                len(subset) / ours["forward_s"],
            ]
        )
    report.print("## Text-only, end to end (tokenize, collate, traced fp32 graph, rows)\n")
    report.print(
        markdown_table(
            (
                "batch",
                "padded-128 items/s",
                "bucketed items/s",
                "ratio",
                "padded forward items/s",
                "bucketed forward items/s",
            ),
            rows,
        )
    )
    best_padded = max(r[1] for r in rows)
    best_bucketed = max(r[2] for r in rows)
    knee = max(rows, key=lambda r: r[2])
    rising = all(b[2] >= a[2] * 0.95 for a, b in pairwise(rows) if b[0] <= knee[0])

    best_batch = int(knee[0])
    run_best = results["bucketed"][best_batch]
    flops = flops_of(model, run_best["batches"])
    model_rate = flops / run_best["forward_s"]
    gemm = gemm_flops(
        [int(n) for n in args.gemm_sizes.split(",")],
        3,
        torch.device("cpu"),
        lambda: None,
        time.thread_time,
    )
    gemm_fp32 = max(g["flop_per_s"] for g in gemm if g["dtype"] == "fp32")
    gemm_bf16 = max(g["flop_per_s"] for g in gemm if g["dtype"] == "bf16")

    bf16_run = run(bf16, model, ads, bucketed, best_batch, args.window)
    fp32_again = run(fp32, model, ads, bucketed, best_batch, args.window)
    thresholds = torch.tensor([p.threshold for p in model.config.policies])
    text_policies = [i for i, p in enumerate(model.config.policies) if list(p.heads) == ["text"]]
    agree = ((bf16_run["scores"] >= thresholds) == (fp32_again["scores"] >= thresholds))[
        :, text_policies
    ]
    bf16_speedup = fp32_again["forward_s"] / bf16_run["forward_s"]
    report.print(
        f"\nForward at batch {best_batch}: {model_rate / 1e9:.1f} GFLOP/s of the fp32 GEMM's "
        f"{gemm_fp32 / 1e9:.1f} ({100 * model_rate / gemm_fp32:.0f} %); bf16 GEMM "
        f"{gemm_bf16 / 1e9:.1f} GFLOP/s. bf16 graph forward {bf16_speedup:.2f}x fp32, decision "
        f"agreement {100 * float(agree.float().mean()):.2f} % over {len(ads)} texts, max |diff| "
        f"{float((bf16_run['scores'] - fp32_again['scores']).abs().max()):.2g}."
    )

    checks = {"calibration ads": parity(fp32, model, sample_ads(), bucketed)}
    if args.holdout is not None and args.holdout.is_file():
        with args.holdout.open() as f:
            held = [
                {"id": r["id"], "text": r["text"]}
                for r in map(json.loads, islice(f, args.holdout_texts))
            ]
        checks[f"{args.holdout} ({len(held)} texts)"] = parity(fp32, model, held, bucketed)
    report.print("\n## Parity: bucketed vs padded-128 scores\n")
    report.print(
        markdown_table(
            ("ads", "scored", "max |Δscore|", "decisions differing"),
            [[k, v["ads"], v["max_abs_diff"], v["decisions_differing"]] for k, v in checks.items()],
        )
    )
    goals = [
        goal_row("text-only best-batch throughput vs padded-128", best_bucketed / best_padded, 3.0),
        goal_row("forward share of fp32 GEMM rate", model_rate / gemm_fp32, 0.5),
        goal_row("bf16 forward speed-up over fp32", bf16_speedup, 1.5),
        goal_row("bf16 decision agreement", float(agree.float().mean()), 1.0),
    ]
    report.print("\n## Goals\n")
    report.print(markdown_table(GOALS_HEADER, goals))
    report.print(
        f"\nThroughput not falling from batch 1 to the knee (batch {best_batch}): {rising}"
    )
    report.save(
        {
            "throughput": [
                dict(zip(("batch", "padded", "bucketed", "ratio"), r[:4], strict=True))
                for r in rows
            ],
            "forward_flop_per_s": model_rate,
            "gemm": gemm,
            "bf16_speedup": bf16_speedup,
            "parity": checks,
        }
    )


if __name__ == "__main__":
    main()
