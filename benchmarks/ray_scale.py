"""`adpolicy score` on one process vs on Ray Data with 1 and 2 actors, at equal cores.

Every run is the CLI in a fresh process (model loading, and for Ray starting a local Ray and
its actors, included), on the machine's cores: the local command with its default threads,
Ray with 1 actor x all cores and with 2 actors x half the cores each. Each command runs twice,
on ``--warmup`` ads and on all of them, so the table also shows the fixed start-up cost and
the scoring rate past it: ``(N - warmup) / (seconds(N) - seconds(warmup))``. ``--repeat R``
runs the engines round robin R times, since the load of a shared machine drifts: every run is
listed with the load average after it, and the goal compares each engine's fastest run.

Then the rows: each Ray run against the local one on the same ads (same ids in the same order,
the largest score difference, error rows equal), on the Davidson tweets and on the sample ads
(examples/ads.jsonl, with media and two broken ads).

    python -m benchmarks.ray_scale                     # 5,000 Davidson tweets, default model
    python -m benchmarks.ray_scale --ads 500 --warmup 50 --repeat 2   # round robin, best kept

The tweets are the first ``--ads`` rows of Davidson et al.'s CSV (``--data``; default
``$ADPOLICY_SHARED/data/davidson/labeled_data.csv``) as ads (:func:`davidson_ad`); ``--data``
may also be a file of ads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import GOALS_HEADER, Report, goal_row, markdown_table

TARGET = 0.85
HEADER = (
    "round",
    "engine",
    "ads",
    "seconds",
    "ads/s",
    "s on the warm-up ads",
    "ads/s past start-up",
    "load avg after",
)
PARITY_HEADER = ("ads", "run", "rows", "same ids, same order", "max abs Δscore", "error rows equal")
SAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ads.jsonl"


def davidson_ads(data: Path, count: int, out: Path) -> Path:
    """The first ``count`` ads of ``data`` (the Davidson CSV, or a JSON Lines file) as JSONL."""
    if data.suffix == ".csv":
        from ensemble.training.davidson import davidson_ad, read_davidson

        ads = [davidson_ad(row, soft=False) for row in read_davidson(data)[:count]]
        lines = [json.dumps(ad) for ad in ads]
    else:
        lines = data.read_text().splitlines()[:count]
    out.write_text("\n".join(lines) + "\n")
    return out


def engines(cores: int) -> list[tuple[str, list[str]]]:
    """Each engine's name and CLI options, all at ``cores`` cores."""
    half = max(1, cores // 2)
    return [
        ("local", []),
        (f"ray 1 actor x {cores} threads", ["--engine", "ray", "--threads-per-actor", str(cores)]),
        (
            f"ray 2 actors x {half} threads",
            ["--engine", "ray", "--actors", "2", "--threads-per-actor", str(half)],
        ),
    ]


def run_cli(ads: Path, out: Path, options: list[str], model: str | None, batch: int) -> float:
    """Score ``ads`` with the CLI in a fresh process; the seconds it took."""
    command = [sys.executable, "-m", "ensemble.cli", "score", str(ads), "-o", str(out)]
    command += ["--no-progress", "--batch-size", str(batch), *options]
    command += ["--model", model] if model else []
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def read_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of a local results file or of a Ray results directory."""
    if out.is_dir():
        from ensemble.distributed import read_results

        return list(read_results(out))
    return [json.loads(line) for line in out.read_text().splitlines()]


def compare(ours: list[dict[str, Any]], local: list[dict[str, Any]]) -> tuple[bool, float, bool]:
    """Same ids in order; the largest score difference; error rows equal."""
    same_ids = [r["id"] for r in ours] == [r["id"] for r in local]
    delta = 0.0
    for a, b in zip(ours, local, strict=False):
        for name, entry in b.get("policies", {}).items():
            other = a.get("policies", {}).get(name, {})
            if entry.get("score") is not None and other.get("score") is not None:
                delta = max(delta, abs(other["score"] - entry["score"]))
    errors = [r for r in ours if r["status"] == "error"] == [
        r for r in local if r["status"] == "error"
    ]
    return same_ids, delta, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("ADPOLICY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--data", type=Path, default=shared / "data/davidson/labeled_data.csv")
    parser.add_argument("--ads", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=100, help="ads of the start-up runs")
    parser.add_argument("--model", help="checkpoint or artifact (default: the embedded model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the engines (best kept)")
    parser.add_argument("--results", help="results file name (default: ray_scale)")
    args = parser.parse_args()
    report = Report("ray_scale", args.results)
    rows: list[list[Any]] = []
    parity: list[list[Any]] = []
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ads = davidson_ads(args.data, args.ads, folder / "davidson.jsonl")
        warm = davidson_ads(args.data, args.warmup, folder / "warmup.jsonl")
        samples_local = folder / "samples-local.jsonl"
        run_cli(SAMPLES, samples_local, [], args.model, args.batch_size)
        name, options = engines(args.cores)[2]
        samples_ray = folder / "samples-ray.jsonl"
        run_cli(
            SAMPLES, samples_ray, [*options, "--ads-per-block", "5"], args.model, args.batch_size
        )
        reference = read_rows(samples_local)
        parity.append(
            ["sample ads", name, len(reference), *compare(read_rows(samples_ray), reference)]
        )
        print(f"sample ads: {parity[-1]}", file=sys.stderr)
        local_rows: list[dict[str, Any]] = []
        runs = [(r, i, e) for r in range(args.repeat) for i, e in enumerate(engines(args.cores))]
        for round_, i, (name, options) in runs:  # round robin: load drifts hit every engine
            warm_out = folder / f"warm{round_}-{i}.jsonl"
            startup = run_cli(warm, warm_out, options, args.model, args.batch_size)
            out = folder / f"run{round_}-{i}.jsonl"
            seconds = run_cli(ads, out, options, args.model, args.batch_size)
            load = os.getloadavg()[0]
            rate = (args.ads - args.warmup) / max(seconds - startup, 1e-9)
            rates[name] = max(rates.get(name, 0.0), args.ads / seconds)
            rows.append(
                [round_ + 1, name, args.ads, seconds, args.ads / seconds, startup, rate, load]
            )
            print(f"{name}: {seconds:.1f} s, start-up {startup:.1f} s", file=sys.stderr)
            if round_ > 0:
                continue
            result = read_rows(out)
            if not local_rows:
                local_rows = result
            else:
                parity.append(
                    [f"{args.ads} Davidson", name, len(result), *compare(result, local_rows)]
                )
    report.print(markdown_table(HEADER, rows))
    report.print("\n" + markdown_table(PARITY_HEADER, parity))
    local_rate = rates["local"]
    goals = [
        goal_row(f"{n} / local ads/s (best of {args.repeat})", r / local_rate, TARGET)
        for n, r in rates.items()
        if n != "local"
    ]
    report.print("\n" + markdown_table(GOALS_HEADER, goals))
    report.save(
        {
            "runs": [dict(zip(HEADER, r, strict=True)) for r in rows],
            "parity": [dict(zip(PARITY_HEADER, p, strict=True)) for p in parity],
        }
    )


if __name__ == "__main__":
    main()
