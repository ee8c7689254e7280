"""What the text normalisers cost: CPU time per text, texts changed, the speller's load.

Each normaliser reads the same texts (the default's sets: raw Davidson hold-out tweets,
HateXplain test posts, the generated benign ad copy, HateCheck's cases; the manifests given).
Printed per set and normaliser: microseconds of CPU per text (``time.thread_time``, best of
``--repeat`` passes, after a warm-up pass that loads what the normaliser needs), and for each
normaliser after the first what it adds per text and the share of texts whose form differs
from the one before's; then what loading the speller of ``social-v4`` costs once per process
(seconds, resident memory).

    python -m benchmarks.textnorm runs/text/davidson_test.jsonl runs/text/hatexplain_test.jsonl \\
        runs/textsets/benign_ads.jsonl runs/textsets/hatecheck.jsonl
"""

from __future__ import annotations

import argparse
import functools
import itertools
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import best, markdown_table, start
from encoders.textnorm import get_normalizer
from ensemble.training.data import read_manifest

NORMALIZERS = ("social-v3", "social-v4", "social-v5")
STEPS = tuple(itertools.pairwise(NORMALIZERS))


def resident_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def normalise_all(normalise: Callable[[str], str], texts: list[str]) -> list[str]:
    return [normalise(t) for t in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path, help="JSONL manifests with text")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = start("textnorm", threads=1)

    sets = {p.stem: [ad["text"] for ad in read_manifest(p) if "text" in ad] for p in args.manifests}
    before = resident_mb()
    loaded = time.perf_counter()
    get_normalizer("social-v4")("warm up")  # the speller's first use loads it
    load = {"seconds": time.perf_counter() - loaded, "resident_mb": resident_mb() - before}

    payload: dict[str, Any] = {"load": load, "sets": {}}
    rows = []
    for name, texts in sets.items():
        cost = {}
        for normalizer in NORMALIZERS:
            run = functools.partial(normalise_all, get_normalizer(normalizer), texts)
            seconds = best(run, args.repeat, time.thread_time)
            cost[normalizer] = 1e6 * seconds / len(texts)
        changed = {}
        for old, new in STEPS:
            before_step, after_step = get_normalizer(old), get_normalizer(new)
            changed[new] = sum(before_step(t) != after_step(t) for t in texts) / len(texts)
        payload["sets"][name] = {"texts": len(texts), "us_per_text": cost, "changed": changed}
        rows.append([name, len(texts), *cost.values()])
        rows[-1] += [f"{cost[new] - cost[old]:+.1f}" for old, new in STEPS]
        rows[-1] += [f"{100 * changed[new]:.1f} %" for _, new in STEPS]
    header = ["set", "texts", *(f"{n} µs/text" for n in NORMALIZERS)]
    header += [f"{new} added µs" for _, new in STEPS]
    header += [f"{new} form differs" for _, new in STEPS]
    report.print(markdown_table(header, rows))
    report.print(
        f"\nLoading the speller (once per process): {load['seconds']:.2f} s, "
        f"{load['resident_mb']:.0f} MB resident"
    )
    report.save(payload)


if __name__ == "__main__":
    main()
