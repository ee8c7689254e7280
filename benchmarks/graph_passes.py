"""Analyzer passes of an exported graph: how many minute-long inputs one forward pass gets.

A traced analyzer runs its whole batch at once (eager ones group their rows themselves), so the
scorer of an artifact (the TorchServe handler's, and offline scoring over an artifact) cuts a
bucket of ads with audio or video into passes of at most ``analyzer_rows`` 60 s inputs
(``Scorer(analyzer_rows=)``, default :data:`export.artifact.ANALYZER_ROWS`). This exports the
embedded default (one TorchScript graph, the archive's) and scores the traffic set's ads with
audio, with video and all of them, ``--batch`` at a time as the handler runs a TorchServe batch
(by bucket as they come), once per ``analyzer_rows`` setting: collation and forward in CPU
seconds of one torch thread, items per CPU-second, and parity of every score and measurement
with the unlimited passes. Settings alternate over ``--rounds`` runs; each keeps its best.

    python -m benchmarks.traffic_set runs/traffic --ads 240 --pool 12
    python -m benchmarks.graph_passes runs/traffic [--batch 32] [--rows 1,2,4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import markdown_table, start
from benchmarks.mixed import largest, only, timed_scores
from ensemble.scoring import DEFAULT_DIR
from export.artifact import ANALYZER_ROWS, Artifact, load_artifact
from export.exporter import export_checkpoint


def sweep(
    artifact: Artifact,
    ads: Sequence[dict[str, Any]],
    base: Path,
    batch: int,
    settings: Sequence[int],
    rounds: int,
) -> tuple[dict[int, float], dict[int, torch.Tensor]]:
    """Items per CPU-second (the best of ``rounds``) for each ``analyzer_rows`` setting (0:
    unlimited), and its scores and measurements side by side, in input order. Each scorer
    takes ``batch`` ads at a time and runs them by bucket as they come (``sort_window`` 1),
    as the handler runs a TorchServe batch."""
    scorers = {
        n: artifact.scorer(allow_paths=True, analyzer_rows=n or None, sort_window=1)
        for n in settings
    }
    prepared = [scorers[settings[0]].preparer.prepare(ad, base_dir=base) for ad in ads]
    for scorer in scorers.values():  # a graph's first calls at a shape allocate and optimise
        timed_scores(scorer, prepared[:batch], batch)
    rates: dict[int, float] = {}
    outs: dict[int, torch.Tensor] = {}
    for _ in range(rounds):  # settings alternate, so each sees the machine's drift
        for n, scorer in scorers.items():
            seconds, scores, measures = timed_scores(scorer, prepared, batch)
            rates[n] = max(rates.get(n, 0.0), len(prepared) / seconds)
            outs[n] = torch.cat([scores, measures], dim=1)
    return rates, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traffic", type=Path, help="folder written by benchmarks.traffic_set")
    parser.add_argument("--ads", type=int, default=240, help="ads of the set used")
    parser.add_argument("--batch", type=int, default=32, help="ads per TorchServe batch")
    parser.add_argument(
        "--rows",
        default="1,2,4",
        help="analyzer_rows settings (0, no limit, and the default always run)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setting (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a server worker)")
    args = parser.parse_args()
    report = start("graph_passes", args.threads)
    settings = sorted({0, ANALYZER_ROWS, *(int(n) for n in args.rows.split(","))})
    ads = [json.loads(line) for line in (args.traffic / "ads.jsonl").read_text().splitlines()]
    ads = ads[: args.ads]
    sets = {"audio": only(ads, "audio"), "video": only(ads, "video"), "mixed": ads}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = load_artifact(export_checkpoint(DEFAULT_DIR, Path(tmp) / "artifact"))
        results = {
            k: sweep(artifact, v, args.traffic, args.batch, settings, args.rounds)
            for k, v in sets.items()
            if v
        }

    rows, payload = [], {}
    for name, (rates, outs) in results.items():
        diff = max(largest((out - outs[0]).nan_to_num(0.0)) for out in outs.values())
        rows.append(
            [
                name,
                len(sets[name]),
                *(rates[n] for n in settings),
                rates[ANALYZER_ROWS] / rates[0],
                diff,
            ]
        )
        payload[name] = {"n": len(sets[name]), "items_per_cpu_s": rates, "max_abs_diff": diff}
    report.print(
        f"## Items per CPU-second, batches of {args.batch} run by bucket as they come "
        f"(analyzer_rows; 0: the whole bucket in one pass)\n"
    )
    header = [
        "set",
        "ads",
        *(f"rows {n}" for n in settings),
        f"{ANALYZER_ROWS} / 0",
        "max |Δ| vs 0",
    ]
    report.print(markdown_table(header, rows))
    report.save({"args": vars(args) | {"traffic": str(args.traffic)}, "sets": payload})


if __name__ == "__main__":
    main()
