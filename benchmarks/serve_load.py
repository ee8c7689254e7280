"""Serving sweep: batchSize x maxBatchDelay x concurrency on a real TorchServe on 127.0.0.1.

For each (``batchSize``, ``maxBatchDelay``) the archive is rebuilt (same artifact, new
model-config) and served by a fresh TorchServe (free ports, token auth on); then, for each
concurrency, a bounded number of requests is sent by that many client threads (one connection
each), each thread sending its next ad as soon as the previous answer arrives. Printed per
cell: requests/s, p50 / p95 / p99 latency, and the mean batch the handler saw (from its
Prometheus metrics). ``batchSize`` 1 runs once: TorchServe does not wait for a batch of one.

In the same run, on the same ads, the in-process throughput of the same artifact: a
:class:`~ensemble.scoring.Scorer` over the loaded graph (the handler's preparation and graph,
no HTTP), at each batch size and the server's torch threads, twice: with ads sorted by bucket
over a window of batches, as offline scoring runs, and with each batch run by bucket as it
comes, as the handler runs a TorchServe batch (the reference of the goals). Goals: served
>= 85 % of in-process at the same batch size; dynamic batching (the best batchSize > 1) >= 2x batchSize 1,
both at the highest concurrency.

    python -m benchmarks.serve_load                  # default model, 1/8/32 x 5/20/50 x 1/8/32
    python -m benchmarks.serve_load --artifact ART --requests 256 --max-batch-delays 20
    python -m benchmarks.serve_load --text-buckets 128 --results serve_load_padded128  # no buckets

Timings on a shared machine are noisy; compare cells within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch

from benchmarks.common import Report, markdown_table, percentile, verdict
from ensemble import samples
from ensemble.scoring import DEFAULT_DIR, SORT_WINDOW
from export.artifact import load_artifact
from export.exporter import export_checkpoint
from serve.archive import ModelSettings, build_archive
from serve.client import Client, Prediction
from serve.server import TorchServe

SERVED_TARGET = 0.85
BATCHING_TARGET = 2.0
Predict = Callable[[Mapping[str, Any]], Prediction]


@dataclass(frozen=True)
class Cell:
    """One measured cell of the sweep."""

    batch_size: int
    max_batch_delay_ms: int
    concurrency: int
    requests: int
    failed: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def row(self) -> list[Any]:
        """The table row (``HEADER`` order) of :meth:`to_json`'s numbers."""
        record = self.to_json()
        return [record[k] for k in ROW_KEYS]

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "max_batch_delay_ms": self.max_batch_delay_ms,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "failed": self.failed,
            "seconds": self.seconds,
            "requests_per_s": self.rate,
            "p50_ms": self.quantile(0.5),
            "p95_ms": self.quantile(0.95),
            "p99_ms": self.quantile(0.99),
            "mean_batch": self.mean_batch,
        }


ROW_KEYS = (
    "batch_size",
    "max_batch_delay_ms",
    "concurrency",
    "requests",
    "requests_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_batch",
    "failed",
)
HEADER = (
    "batchSize",
    "maxBatchDelay (ms)",
    "concurrency",
    "requests",
    "req/s",
    "p50 (ms)",
    "p95 (ms)",
    "p99 (ms)",
    "mean batch",
    "errors",
)


def text_ads(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` text ads of 3 to 60 words drawn from the calibration sentences."""
    words = " ".join(samples.SAMPLE_TEXTS).split()
    rng = np.random.default_rng(seed)
    return [
        {"id": f"load-{i}", "text": " ".join(rng.choice(words, int(rng.integers(3, 60))))}
        for i in range(n)
    ]


def default_checkpoint(root: Path, text_buckets: str | None) -> Path:
    """The embedded default, or a copy of it whose text buckets are ``text_buckets``
    (e.g. ``"128"``: every text padded to 128 tokens, the behaviour before buckets)."""
    if text_buckets is None:
        return DEFAULT_DIR
    copy = Path(shutil.copytree(DEFAULT_DIR, root / "checkpoint"))
    config = json.loads((copy / "config.json").read_text())
    config["encoders"]["text"]["buckets"] = [int(b) for b in text_buckets.split(",")]
    (copy / "config.json").write_text(json.dumps(config, indent=2))
    return copy


def batch_stats(server: TorchServe) -> tuple[float, float]:
    """(handler calls, requests) so far, from the handler's batch-size histogram (every model
    of the server together)."""
    text = requests.get(server.metrics_url, timeout=10).text
    values = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for kind in values:
            if line.startswith(f"adpolicy_batch_size_{kind}{{"):
                values[kind] += float(line.rsplit(" ", 1)[1])
    return values["count"], values["sum"]


def run_cell(
    make_predict: Callable[[], Predict],
    ads: Sequence[Mapping[str, Any]],
    concurrency: int,
    total: int,
) -> tuple[int, float, list[float]]:
    """Send ``total`` requests from ``concurrency`` threads, each with its own
    ``make_predict()``; (failed, seconds, latencies in ms)."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    failed = 0

    def worker() -> None:
        nonlocal failed
        predict = make_predict()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            status = predict(ads[index % len(ads)]).status
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                failed += status != 200

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return failed, time.perf_counter() - start, latencies


def measure(
    server: TorchServe,
    make_predict: Callable[[], Predict],
    ads: Sequence[Mapping[str, Any]],
    concurrency: int,
    total: int,
    settings: ModelSettings,
) -> Cell:
    """One cell: ``total`` requests at ``concurrency``, and the handler's mean batch meanwhile."""
    calls, served = batch_stats(server)
    failed, seconds, latencies = run_cell(make_predict, ads, concurrency, total)
    calls_after, served_after = batch_stats(server)
    mean = (served_after - served) / max(calls_after - calls, 1)
    return Cell(
        settings.batch_size,
        settings.max_batch_delay_ms,
        concurrency,
        total,
        failed,
        seconds,
        latencies,
        mean,
    )


def client_predict(server: TorchServe) -> Predict:
    """A new client's ``predict`` for the first model on ``server``."""
    return Client(server.predictions_url(), key_file=server.key_file).predict


def in_process_rate(
    artifact: Path,
    ads: Sequence[Mapping[str, Any]],
    batch_size: int,
    total: int,
    workers: int,
    sort_window: int,
) -> float:
    """Ads per second of the artifact's graph in this process: a Scorer over the loaded
    artifact (the handler's preparation and graph), ``batch_size`` ads per forward, sorted by
    bucket over ``sort_window`` batches (1: each batch run by bucket as it comes, as the
    handler runs a TorchServe batch). Media paths in ``ads`` are decoded from their files, as
    the client reads them to send.

    Raises:
        SystemExit: An ad did not score (the rate would time error rows).
    """
    scorer = load_artifact(artifact).scorer(
        allow_paths=True, batch_size=batch_size, workers=workers, sort_window=sort_window
    )
    stream = [ads[i % len(ads)] for i in range(total)]
    scorer.score(stream[: 2 * batch_size])  # warm up
    start = time.perf_counter()
    rows = scorer.score(stream)
    seconds = time.perf_counter() - start
    if failed := next((r for r in rows if r["status"] != "ok"), None):
        raise SystemExit(f"in process, ad {failed['id']} did not score: {failed['errors']}")
    return total / seconds


def sweep_settings(
    batch_sizes: Sequence[int], delays: Sequence[int], workers: int, torch_threads: int
) -> list[ModelSettings]:
    """The archives to serve: every batch size with every delay, batch size 1 once."""
    return [
        ModelSettings(
            batch_size=b, max_batch_delay_ms=d, workers=workers, torch_threads=torch_threads
        )
        for b in batch_sizes
        for d in (delays[:1] if b == 1 else delays)
    ]


def goals(cells: Sequence[Cell], in_process: Mapping[int, float]) -> list[dict[str, Any]]:
    """Served vs in-process per batch size, and dynamic batching, at the highest concurrency
    (the best delay of each batch size)."""
    top = max(c.concurrency for c in cells)
    best: dict[int, Cell] = {}
    for cell in (c for c in cells if c.concurrency == top):
        if cell.batch_size not in best or cell.rate > best[cell.batch_size].rate:
            best[cell.batch_size] = cell
    out = [
        {
            "goal": f"served / in-process, batchSize {b} (maxBatchDelay {cell.max_batch_delay_ms}"
            f" ms, {top} clients)",
            "served": cell.rate,
            "reference": in_process[b],
            "ratio": cell.rate / in_process[b],
            "target": SERVED_TARGET,
        }
        for b, cell in sorted(best.items())
    ]
    batched = max((c for b, c in best.items() if b > 1), key=lambda c: c.rate, default=None)
    if 1 in best and batched is not None:
        out.append(
            {
                "goal": f"dynamic batching: batchSize {batched.batch_size} (maxBatchDelay "
                f"{batched.max_batch_delay_ms} ms) / batchSize 1, {top} clients",
                "served": batched.rate,
                "reference": best[1].rate,
                "ratio": batched.rate / best[1].rate,
                "target": BATCHING_TARGET,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--artifact", type=Path, help="export artifact (default: export the default model)"
    )
    parser.add_argument("--ads", type=Path, help="JSONL of ads (default: generated text ads)")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--max-batch-delays", default="5,20,50", help="milliseconds")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=192, help="requests per cell")
    parser.add_argument("--workers", type=int, default=ModelSettings.workers)
    parser.add_argument("--torch-threads", type=int, default=ModelSettings.torch_threads)
    parser.add_argument(
        "--text-buckets", help="export the default with these text buckets, e.g. 128 (no buckets)"
    )
    parser.add_argument("--results", help="results file name (default serve_load)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.torch_threads)  # in-process runs as one worker does
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    delays = [int(d) for d in args.max_batch_delays.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    report = Report("serve_load", args.results)

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        root = Path(tmp)
        artifact = args.artifact or export_checkpoint(
            default_checkpoint(root, args.text_buckets), root / "artifact"
        )
        ads = (
            [json.loads(line) for line in args.ads.read_text().splitlines() if line.strip()]
            if args.ads
            else text_ads(512)
        )
        manifest = json.loads((artifact / "manifest.json").read_text())
        preparation = ModelSettings.preparation_threads
        report.print(
            f"Serve load: {manifest['config']['name']} {manifest['config']['version']}, "
            f"{len(ads)} distinct ads, {args.requests} requests per cell, {args.workers} "
            f"worker(s) x {args.torch_threads} torch thread(s), {preparation} preparation "
            "threads; client, TorchServe (Java frontend + Python worker) on the same machine.\n"
        )
        sorted_rate, in_process = (
            {
                b: in_process_rate(artifact, ads, b, args.requests, preparation, w)
                for b in batch_sizes
            }
            for w in (SORT_WINDOW, 1)
        )
        report.print(
            "In-process (Scorer over the loaded artifact, same ads, same threads; ads sorted by "
            f"bucket over {SORT_WINDOW} batches, as offline scoring runs, or each batch "
            "run by bucket as it comes, as the handler runs a TorchServe batch: the reference "
            "of the goals):\n"
        )
        rows = [(b, sorted_rate[b], in_process[b]) for b in batch_sizes]
        report.print(markdown_table(("batch size", "ads/s sorted", "ads/s as served"), rows))
        report.print("\nServed:\n")
        report.print(markdown_table(HEADER, []))
        cells: list[Cell] = []
        for settings in sweep_settings(batch_sizes, delays, args.workers, args.torch_threads):
            name = f"{settings.batch_size}-{settings.max_batch_delay_ms}"
            mar = build_archive(artifact, root / f"store-{name}", settings)
            with TorchServe.start([mar], run_dir=root / f"run-{name}", port=0) as server:
                make_predict = partial(client_predict, server)
                # warm up every batch shape
                run_cell(make_predict, ads, settings.batch_size, 2 * settings.batch_size)
                for concurrency in concurrencies:
                    cell = measure(server, make_predict, ads, concurrency, args.requests, settings)
                    cells.append(cell)
                    row = markdown_table(HEADER, [cell.row()]).splitlines()[-1]
                    report.print(row)
        results = goals(cells, in_process)
        report.print(
            "\nGoals (req/s at the highest concurrency; reference: in-process or batchSize 1):\n"
        )
        report.print(
            markdown_table(
                ("goal", "req/s", "reference", "ratio", "target", "verdict"),
                [
                    (
                        g["goal"],
                        g["served"],
                        g["reference"],
                        g["ratio"],
                        g["target"],
                        verdict(g["ratio"], g["target"]),
                    )
                    for g in results
                ],
            )
        )
        report.save(
            {
                "model": manifest["config"]["name"],
                "workers": args.workers,
                "torch_threads": args.torch_threads,
                "in_process_ads_per_s": {str(b): r for b, r in in_process.items()},
                "in_process_sorted_ads_per_s": {str(b): r for b, r in sorted_rate.items()},
                "cells": [c.to_json() for c in cells],
                "goals": results,
            }
        )


if __name__ == "__main__":
    main()
