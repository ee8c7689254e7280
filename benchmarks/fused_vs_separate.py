"""Fused vs separate: ONE archive with every encoder vs one archive per modality, fanned out.

Fused (ours): the default model exported as one graph, one archive. Separate: the same
checkpoint split by modality (:func:`ensemble.builder.modality_ensemble`: each modality's
encoders and the heads that read them, same weights), exported and archived one per modality,
all four registered in one TorchServe; a :class:`serve.fanout.FanOutClient` sends each part of
an ad to its modality's archive at once and merges the per-policy scores (max, as the fused
graph's fusion does). First the merged scores are checked against the fused archive's on a few
ads; then both setups serve the same mixed traffic (text, small PNG banners, 1 s WAV clips, a
few 1 s flashing videos) at each concurrency, one setup at a time.

Fair budget: both run the same number of worker processes with the same torch threads each:
4 workers of the one archive, one worker per archive; ``--fused-workers N`` gives the fused
archive another number (results then in ``fused_vs_separate_Nw``).

    python -m benchmarks.fused_vs_separate [--requests 96] [--concurrency 1,8,32]

Goal: fused >= 1.3x separate throughput. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Report, markdown_table, verdict
from benchmarks.serve_load import Cell, Predict, client_predict, measure, run_cell, text_ads
from encoders.base import MODALITIES
from ensemble import samples
from ensemble.builder import modality_ensemble
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import DEFAULT_DIR
from export.artifact import MANIFEST_FILE
from export.exporter import export_model, load_model
from serve.archive import ModelSettings, build_archive
from serve.client import Client
from serve.fanout import FanOutClient
from serve.server import TorchServe

TARGET = 1.3
TOLERANCE = 1e-5
CHECK_ADS = 8
MEDIA_CHANCE = {"image": 0.3, "audio": 0.4, "video": 0.05}  # share of ads with each medium


def _b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


def media(folder: Path) -> dict[str, list[dict[str, str]]]:
    """A few small media of each kind, base64: PNG banners, 1 s WAV clips (quiet and loud),
    1 s videos at 15 fps (steady and strobing)."""
    images = [
        _b64(samples.png_bytes(samples.banner(240 + 80 * seed, 160, seed=seed)))
        for seed in range(3)
    ]
    clips = [
        _b64(
            samples.wav_bytes(
                samples.tone(1.0, rate=16_000, freqs=(220.0 * (1 + seed),), amplitude=amplitude),
                16_000,
            )
        )
        for seed, amplitude in enumerate((0.03, 0.1, 0.9))
    ]
    videos = [
        _b64(
            samples.write_video(
                folder / f"clip-{hz}.mp4",
                samples.flashing_frames(160, 90, fps=15, hz=hz, area=0.5),
                frames=15,
                fps=15,
            ).read_bytes()
        )
        for hz in (1, 5)
    ]
    return {"image": images, "audio": clips, "video": videos}


def mixed_ads(n: int, folder: Path, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` ads: a banner on 30 %, a clip on 40 %, a video on 5 %, text on all but a fifth of
    those with media; the first ads have every modality (the score check uses them)."""
    rng = np.random.default_rng(seed)
    pool = media(folder)
    ads = []
    for i, ad in enumerate(text_ads(n, seed)):
        for field, chance in MEDIA_CHANCE.items():
            if i < CHECK_ADS // 2 or rng.random() < chance:
                ad[field] = pool[field][int(rng.integers(len(pool[field])))]
        if i >= CHECK_ADS and rng.random() >= 0.8 and len(ad) > 2:
            del ad["text"]
        ads.append(ad)
    return ads


def export_all(root: Path) -> dict[str, Path]:
    """The fused artifact and one per modality, from the default checkpoint (reused when
    ``root`` already holds them)."""
    model = load_model(DEFAULT_DIR)
    parts: dict[str, AdPolicyEnsemble] = {
        "fused": model,
        **{m: modality_ensemble(model, m) for m in MODALITIES},
    }
    out = {}
    for name, part in parts.items():
        out[name] = root / f"artifact-{name}"
        if not (out[name] / MANIFEST_FILE).is_file():
            export_model(part, out[name], source={"checkpoint": str(DEFAULT_DIR), "part": name})
    return out


def fanout_factory(
    server: TorchServe, models: Mapping[str, str], opened: list[FanOutClient]
) -> Predict:
    """A new fan-out client's ``predict`` (kept in ``opened`` to close it later)."""
    clients = {
        m: Client(server.predictions_url(name), key_file=server.key_file)
        for m, name in models.items()
    }
    opened.append(FanOutClient(clients))
    return opened[-1].predict


def compare(
    ads: Sequence[Mapping[str, Any]],
    fused: Sequence[Mapping[str, Any]],
    merged: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Per ad: the largest difference between the fused and the merged policy scores, and
    whether flags and statuses agree (a policy the fan-out never asked for is not_applicable)."""
    rows = []
    for ad, one, two in zip(ads, fused, merged, strict=True):
        diffs, agree = [0.0], set(one["flags"]) == set(two["flags"])
        for name, entry in one["policies"].items():
            other = two["policies"].get(name, {"status": "not_applicable"})
            agree &= entry["status"] == other["status"]
            if entry["status"] == "scored" == other["status"]:
                diffs.append(abs(entry["score"] - other["score"]))
        present = "+".join(m for m in MODALITIES if ad.get(m) is not None)
        rows.append({"id": ad["id"], "modalities": present, "max_diff": max(diffs), "agree": agree})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=96, help="requests per cell")
    parser.add_argument("--batch-size", type=int, default=ModelSettings.batch_size)
    parser.add_argument("--max-batch-delay", type=int, default=ModelSettings.max_batch_delay_ms)
    parser.add_argument("--torch-threads", type=int, default=ModelSettings.torch_threads)
    parser.add_argument("--fused-workers", type=int, default=len(MODALITIES))
    parser.add_argument("--work", type=Path, help="keep the artifacts here (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    workers = args.fused_workers
    same = workers == len(MODALITIES)
    report = Report("fused_vs_separate", None if same else f"fused_vs_separate_{workers}w")

    with tempfile.TemporaryDirectory(prefix="fused-separate-") as tmp:
        root = Path(tmp)
        work = args.work or root
        artifacts = export_all(work)
        ads = mixed_ads(256, root)
        counts = {m: sum(ad.get(m) is not None for ad in ads) for m in MODALITIES}
        report.print(
            f"Fused vs separate: adpolicy-default, {len(ads)} distinct ads ({counts}), "
            f"{args.requests} requests per cell; batchSize {args.batch_size}, maxBatchDelay "
            f"{args.max_batch_delay} ms; {args.torch_threads} torch thread(s) per worker: fused "
            f"{workers} worker(s) of one archive, separate 1 worker per modality archive "
            f"({len(MODALITIES)}). Client, TorchServe (Java frontend + "
            "workers) on the same machine.\n"
        )

        def settings(workers: int) -> ModelSettings:
            return ModelSettings(
                batch_size=args.batch_size,
                max_batch_delay_ms=args.max_batch_delay,
                workers=workers,
                torch_threads=args.torch_threads,
            )

        fused_mar = build_archive(artifacts["fused"], root / "store-fused", settings(workers))
        names: dict[str, str] = {m: f"adpolicy-default-{m}" for m in MODALITIES}
        separate_mars = [
            build_archive(artifacts[m], root / "store-separate", settings(1), model_name=names[m])
            for m in MODALITIES
        ]
        cells: dict[str, list[Cell]] = {}
        opened: list[FanOutClient] = []
        check = ads[:CHECK_ADS]
        with TorchServe.start(separate_mars, run_dir=root / "run-separate", port=0) as server:
            separate = partial(fanout_factory, server, names, opened)
            predict = separate()
            merged = [predict(ad).body for ad in check]
            run_cell(separate, ads, args.batch_size, 2 * args.batch_size)  # warm up
            cells["separate"] = [
                measure(server, separate, ads, c, args.requests, settings(1)) for c in concurrencies
            ]
        for client in opened:
            client.close()
        with TorchServe.start([fused_mar], run_dir=root / "run-fused", port=0) as server:
            fused = partial(client_predict, server)
            predict = fused()
            fused_rows = [predict(ad).body for ad in check]
            run_cell(fused, ads, args.batch_size, 2 * args.batch_size)  # warm up
            cells["fused"] = [
                measure(server, fused, ads, c, args.requests, settings(workers))
                for c in concurrencies
            ]

    checks = compare(check, fused_rows, merged)
    report.print(f"Merged (separate) vs fused scores, tolerance {TOLERANCE}:\n")
    report.print(
        markdown_table(
            (
                "ad",
                "modalities",
                "max |score diff|",
                "flags and statuses agree",
                "within tolerance",
            ),
            [
                (
                    c["id"],
                    c["modalities"],
                    f"{c['max_diff']:.1e}",
                    c["agree"],
                    c["max_diff"] <= TOLERANCE,
                )
                for c in checks
            ],
        )
    )
    report.print("\nThroughput and latency:\n")
    rows = [
        (
            name,
            c.concurrency,
            c.requests,
            c.rate,
            c.quantile(0.5),
            c.quantile(0.99),
            c.mean_batch,
            c.failed,
        )
        for name in ("fused", "separate")
        for c in cells[name]
    ]
    report.print(
        markdown_table(
            (
                "setup",
                "concurrency",
                "requests",
                "ads/s",
                "p50 (ms)",
                "p99 (ms)",
                "mean batch",
                "errors",
            ),
            rows,
        )
    )
    ratios = [
        {
            "concurrency": f.concurrency,
            "throughput_ratio": f.rate / s.rate,
            "p50_ratio": f.quantile(0.5) / s.quantile(0.5),
            "p99_ratio": f.quantile(0.99) / s.quantile(0.99),
        }
        for f, s in zip(cells["fused"], cells["separate"], strict=True)
    ]
    report.print(
        f"\nFused / separate (goal: throughput >= {TARGET}x; latency ratios < 1 favour fused):\n"
    )
    report.print(
        markdown_table(
            ("concurrency", "throughput ratio", "p50 ratio", "p99 ratio", "verdict"),
            [
                (
                    r["concurrency"],
                    r["throughput_ratio"],
                    r["p50_ratio"],
                    r["p99_ratio"],
                    verdict(r["throughput_ratio"], TARGET),
                )
                for r in ratios
            ],
        )
    )
    report.save(
        {
            "fused_workers": workers,
            "separate_workers": len(MODALITIES),
            "torch_threads": args.torch_threads,
            "batch_size": args.batch_size,
            "max_batch_delay_ms": args.max_batch_delay,
            "ads": counts,
            "score_check": checks,
            "cells": {name: [c.to_json() for c in cs] for name, cs in cells.items()},
            "ratios": ratios,
            "target": TARGET,
        }
    )


if __name__ == "__main__":
    main()
