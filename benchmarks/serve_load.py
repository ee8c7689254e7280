"""Serving load test: throughput and latency of a real TorchServe on 127.0.0.1.

For each ``batchSize`` the archive is rebuilt (same artifact, new model-config) and served by a
fresh TorchServe (free ports, token auth on, 1 worker); then, for each concurrency, a bounded
number of requests is sent by that many client threads (one connection each), each thread
sending its next ad as soon as the previous answer arrives. Printed per cell: requests/s,
p50 / p95 / p99 latency, and the mean batch the handler saw (from its Prometheus metrics).

    python -m benchmarks.serve_load                          # default model, 1/8/32 x 1/8/32
    python -m benchmarks.serve_load --artifact ART --requests 512 --max-batch-delay 20

Timings on a shared machine are noisy; compare cells within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch

from ensemble.scoring import DEFAULT_DIR
from export.calibration import SAMPLE_TEXTS
from export.exporter import export_checkpoint
from serve.archive import ModelSettings, build_archive
from serve.client import Client
from serve.server import TorchServe


@dataclass(frozen=True)
class Cell:
    batch_size: int
    concurrency: int
    requests: int
    failed: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float

    def row(self) -> str:
        p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99])
        return (
            f"| {self.batch_size:>9} | {self.concurrency:>11} | {self.requests:>8} "
            f"| {self.requests / self.seconds:>8.1f} | {p50:>8.1f} | {p95:>8.1f} | {p99:>8.1f} "
            f"| {self.mean_batch:>10.2f} | {self.failed:>6} |"
        )


HEADER = (
    "| batchSize | concurrency | requests |    req/s | p50 (ms) | p95 (ms) | p99 (ms) "
    "| mean batch | errors |\n"
    "|----------:|------------:|---------:|---------:|---------:|---------:|---------:"
    "|-----------:|-------:|"
)


def text_ads(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` text ads of 3 to 60 words drawn from the calibration sentences."""
    words = " ".join(SAMPLE_TEXTS).split()
    rng = np.random.default_rng(seed)
    return [
        {"id": f"load-{i}", "text": " ".join(rng.choice(words, int(rng.integers(3, 60))))}
        for i in range(n)
    ]


def batch_stats(server: TorchServe) -> tuple[float, float]:
    """(handler calls, requests) so far, from the handler's batch-size histogram."""
    text = requests.get(server.metrics_url, timeout=10).text
    values = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for kind in values:
            if line.startswith(f"adpolicy_batch_size_{kind}{{"):
                values[kind] += float(line.rsplit(" ", 1)[1])
    return values["count"], values["sum"]


def run_cell(
    server: TorchServe, ads: Sequence[dict[str, Any]], concurrency: int, total: int
) -> tuple[int, float, list[float]]:
    """Send ``total`` requests from ``concurrency`` threads; (failed, seconds, latencies)."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    failed = 0

    def worker() -> None:
        nonlocal failed
        client = Client(server.predictions_url(), key_file=server.key_file)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            status = client.predict(ads[index % len(ads)]).status
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                failed += status != 200

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return failed, time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--artifact", type=Path, help="export artifact (default: export the default model)"
    )
    parser.add_argument("--ads", type=Path, help="JSONL of ads (default: generated text ads)")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=256, help="requests per cell")
    parser.add_argument("--max-batch-delay", type=int, default=ModelSettings.max_batch_delay_ms)
    parser.add_argument("--workers", type=int, default=ModelSettings.workers)
    parser.add_argument("--torch-threads", type=int, default=ModelSettings.torch_threads)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        root = Path(tmp)
        artifact = args.artifact or export_checkpoint(DEFAULT_DIR, root / "artifact")
        ads = (
            [json.loads(line) for line in args.ads.read_text().splitlines() if line.strip()]
            if args.ads
            else text_ads(512)
        )
        manifest = json.loads((artifact / "manifest.json").read_text())
        print(
            f"# serve load: {manifest['config']['name']} {manifest['config']['version']}, "
            f"{len(ads)} distinct ads, {args.requests} requests per cell, maxBatchDelay "
            f"{args.max_batch_delay} ms, {args.workers} worker(s) x {args.torch_threads} "
            "torch thread(s)\n"
            f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}, 127.0.0.1\n"
        )
        print(HEADER)
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            settings = ModelSettings(
                batch_size=batch_size,
                max_batch_delay_ms=args.max_batch_delay,
                workers=args.workers,
                torch_threads=args.torch_threads,
            )
            mar = build_archive(artifact, root / f"store-{batch_size}", settings)
            with TorchServe.start([mar], run_dir=root / f"run-{batch_size}", port=0) as server:
                run_cell(server, ads, batch_size, 2 * batch_size)  # warm up every batch shape
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    calls, served = batch_stats(server)
                    failed, seconds, latencies = run_cell(server, ads, concurrency, args.requests)
                    calls_after, served_after = batch_stats(server)
                    mean = (served_after - served) / max(calls_after - calls, 1)
                    cell = Cell(
                        batch_size, concurrency, args.requests, failed, seconds, latencies, mean
                    )
                    print(cell.row(), flush=True)


if __name__ == "__main__":
    main()
