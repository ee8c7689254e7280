"""`adpolicy score` at scale: rows = lines, and memory flat in the number of ads.

Writes a file of text ads with a share of hostile lines (bytes that are not UTF-8, cut JSON,
arrays, wrong types, deep nesting, lone surrogates, unknown fields), then scores it with
``python -m ensemble.cli score`` twice in fresh processes: the small run and the large run.
Printed per run: lines, rows written, error rows, the exit status, time, ads/s and the peak
RSS of the scoring process (``wait4``'s ``ru_maxrss``). Goals: rows = non-blank lines, and
the large run's peak RSS within 10 % of the small run's.

    python -m benchmarks.score_scale                       # 200,000 vs 2,000, 1 % bad
    python -m benchmarks.score_scale --model CKPT --ads 50000 --batch-size 32

The default model's text encoder sets the speed (hours for 200,000 ads on 2 cores); memory is
what is measured, so a small checkpoint (``--model``) answers the question as well.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import GOALS_HEADER, Report, markdown_table, verdict

RSS_TARGET = 1.10
HEADER = ("ads", "bad lines", "rows", "error rows", "exit", "seconds", "ads/s", "peak RSS MiB")
WORDS = ("fresh", "coffee", "sale", "shoes", "win", "big", "tonight", "free", "offer", "new")


def hostile(rng: random.Random, n: int) -> bytes:
    """One bad line of a kind picked by ``rng`` (never blank, never holding a newline)."""
    kinds = [
        lambda: bytes(rng.randrange(128, 256) for _ in range(20)),
        lambda: json.dumps({"id": f"cut-{n}", "text": "half a line"})[:20].encode(),
        lambda: b"[1, 2, 3]",
        lambda: json.dumps({"id": f"typed-{n}", "text": 42}).encode(),
        lambda: b'{"meta": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        lambda: b'{"id": "s%d", "text": "\\ud800"}' % n,
        lambda: json.dumps({"id": f"field-{n}", "txt": "typo"}).encode(),
    ]
    return rng.choice(kinds)()


def write_ads(path: Path, count: int, bad: float, seed: int = 0) -> int:
    """``count`` lines, a share ``bad`` of them hostile; returns the number of bad lines."""
    rng = random.Random(seed)
    bad_lines = 0
    with path.open("wb") as f:
        for n in range(count):
            if rng.random() < bad:
                bad_lines += 1
                f.write(hostile(rng, n) + b"\n")
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 16)))
                f.write(json.dumps({"id": f"ad-{n}", "text": text}).encode() + b"\n")
    return bad_lines


def score(ads: Path, out: Path, model: str | None, batch_size: int) -> tuple[int, float, float]:
    """Run the CLI in a fresh process: its exit status, seconds and peak RSS in MiB."""
    command = [sys.executable, "-m", "ensemble.cli", "score", str(ads), "-o", str(out)]
    command += ["--no-progress", "--batch-size", str(batch_size)]
    command += ["--model", model] if model else []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def run(folder: Path, count: int, bad: float, model: str | None, batch_size: int) -> list[Any]:
    ads, out = folder / f"ads-{count}.jsonl", folder / f"rows-{count}.jsonl"
    bad_lines = write_ads(ads, count, bad)
    code, seconds, rss = score(ads, out, model, batch_size)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    errors = sum(r["status"] == "error" for r in rows)
    return [count, bad_lines, len(rows), errors, code, seconds, count / seconds, rss]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--bad", type=float, default=0.01, help="share of hostile lines")
    parser.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    report = Report("score_scale")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            run(Path(tmp), n, args.bad, args.model, args.batch_size) for n in (args.small, args.ads)
        ]
    report.print(markdown_table(HEADER, rows))
    small, large = rows
    ratio = large[-1] / small[-1]
    goals = [
        [
            "rows = lines (large run)",
            large[2],
            large[0],
            "met" if large[2] == large[0] else "missed",
        ],
        [
            "peak RSS large / small",
            ratio,
            RSS_TARGET,
            "met" if ratio <= RSS_TARGET else verdict(RSS_TARGET, ratio),
        ],
    ]
    report.print("\n" + markdown_table(GOALS_HEADER, goals))
    report.save({"runs": [dict(zip(HEADER, r, strict=True)) for r in rows], "rss_ratio": ratio})


if __name__ == "__main__":
    main()
