"""Allow / review / block bands by Learn then Test on labelled data: what they achieve and
how often a target fails over random calibration / test splits.

For each policy and each (block precision, allow miss rate) target: the labelled ads are split
at random into a calibration half, where :func:`ensemble.training.calibrate.learn_then_test`
picks the two thresholds, and a test half, where the achieved block precision, allow miss rate
and review share are measured. Over ``--splits`` splits the table gives the mean of each and
the share of splits in which the test half misses a target. That share overstates the
guarantee's failure rate (at most ``delta`` on the TRUE rates): the test half's own sampling
noise adds misses of its own.

The true-rate check removes that noise: the whole labelled set is taken as the population,
each of ``--splits`` calibration sets (half its size) is drawn from it with replacement, so
exactly as the guarantee assumes (independent draws from the population), and the chosen
thresholds are judged on the whole population, whose rates are the true ones. The share of
draws whose thresholds break a target on the population is the guarantee's failure rate,
which must be at most ``delta``.

Each row is run for every ``--start-errors`` value (the errors the sequence of tests tolerates
at its first test; 0: the first threshold that could pass at all), so that what a noisy label
among the most extreme scores costs shows beside the guarantee.

    python -m benchmarks.decision_bands --data runs/text/davidson_test.jsonl [--model CHECKPOINT]
        [--targets 0.95:0.02,0.9:0.05,0.8:0.1] [--delta 0.1] [--splits 100] [--scores FILE]
        [--start-errors 0,2]
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Report, markdown_table
from ensemble.pretrained import from_pretrained
from ensemble.scoring import DEFAULT_DIR
from ensemble.training.calibrate import Targets, learn_then_test, outcome
from ensemble.training.data import label_tensors, read_manifest
from ensemble.training.evaluate import score_ads

log = logging.getLogger(__name__)
HEADER = (
    "policy",
    "start errors",
    "block precision target",
    "allow miss target",
    "block precision",
    "allow miss rate",
    "review share",
    "test halves missing a target",
    "true-rate violations",
)


def parse_targets(spec: str) -> list[tuple[float, float]]:
    """``"0.95:0.02,0.9:0.05"`` -> ``[(0.95, 0.02), (0.9, 0.05)]``."""
    pairs = [part.split(":") for part in spec.split(",")]
    return [(float(precision), float(miss)) for precision, miss in pairs]


def split_runs(
    scores: np.ndarray,
    labels: np.ndarray,
    targets: tuple[float, float],
    *,
    delta: float,
    splits: int,
    start_errors: int,
) -> dict[str, float]:
    """Mean test-half outcome and the share of splits missing a target."""
    precision, miss = targets
    outcomes, missed = [], 0
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(scores))
        cal, test = order[: len(order) // 2], order[len(order) // 2 :]
        band = learn_then_test(
            scores[cal], labels[cal], Targets(precision, miss, delta, start_errors)
        )
        got = outcome(scores[test], labels[test], band.allow, band.block)
        outcomes.append(got)
        missed += got["block_precision"] < precision or got["allow_miss_rate"] > miss
    mean = {k: float(np.mean([o[k] for o in outcomes])) for k in outcomes[0]}
    return {**mean, "missed_share": missed / splits}


def true_rate_runs(
    scores: np.ndarray,
    labels: np.ndarray,
    targets: tuple[float, float],
    *,
    delta: float,
    draws: int,
    start_errors: int,
) -> float:
    """The share of calibration draws (half the population's size, with replacement) whose
    thresholds break a target on the whole population (see the module docstring)."""
    precision, miss = targets
    violated = 0
    for seed in range(draws):
        cal = np.random.default_rng(10_000 + seed).integers(0, len(scores), len(scores) // 2)
        band = learn_then_test(
            scores[cal], labels[cal], Targets(precision, miss, delta, start_errors)
        )
        true = outcome(scores, labels, band.allow, band.block)
        violated += true["block_precision"] < precision or true["allow_miss_rate"] > miss
    return violated / draws


def labelled_scores(
    model_dir: Path, data: Path, cache: Path | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per policy with at least 100 labelled, applicable ads: raw scores and 0/1 labels (read
    from ``cache`` when it exists, else scored and written there)."""
    if cache is not None and cache.exists():
        stored = np.load(cache)
        names = sorted({k.rsplit(".", 1)[0] for k in stored.files})
        return {n: (stored[f"{n}.scores"], stored[f"{n}.labels"]) for n in names}
    model = from_pretrained(model_dir)
    ads = read_manifest(data)
    scores, applicable = score_ads(model, ads, base_dir=data.parent, progress=False)
    targets, known = label_tensors(ads, model.config.policy_names)
    out = {}
    for j, policy in enumerate(model.config.policy_names):
        keep = applicable[:, j] & (known[:, j].numpy() > 0)
        if keep.sum() >= 100:
            out[policy] = (scores[keep, j], (targets[:, j].numpy()[keep] >= 0.5).astype(int))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            f"{n}.{k}": a for n, (s, y) in out.items() for k, a in (("scores", s), ("labels", y))
        }
        np.savez(cache, **arrays)  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled JSONL manifest")
    parser.add_argument("--model", type=Path, default=DEFAULT_DIR, help="checkpoint directory")
    parser.add_argument("--targets", default="0.95:0.02,0.9:0.05,0.8:0.1")
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument(
        "--start-errors", default="0,2", help="comma-separated start_errors of learn_then_test"
    )
    parser.add_argument("--results", help="results file name (default: decision_bands)")
    parser.add_argument(
        "--scores", type=Path, help="cache of the raw scores (.npz): read if present, else written"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    report = Report("decision_bands", args.results)
    pools = labelled_scores(args.model, args.data, args.scores)
    n = max(len(s) for s, _ in pools.values())
    rows: list[list[Any]] = []
    payload: dict[str, Any] = {"data": str(args.data), "n": n, "delta": args.delta}
    starts = [int(v) for v in args.start_errors.split(",")]
    for policy, (scores, labels) in pools.items():
        for target, start in itertools.product(parse_targets(args.targets), starts):
            runs = {"delta": args.delta, "start_errors": start}
            got = split_runs(scores, labels, target, splits=args.splits, **runs)
            got["true_rate_violations"] = true_rate_runs(
                scores, labels, target, draws=args.splits, **runs
            )
            payload.setdefault(policy, []).append({"targets": target, "start_errors": start, **got})
            rows.append(
                [
                    policy,
                    start,
                    *target,
                    got["block_precision"],
                    got["allow_miss_rate"],
                    got["review_share"],
                    got["missed_share"],
                    got["true_rate_violations"],
                ]
            )
    report.print(
        f"{n} labelled ads of {args.data.name}; calibration / test halves, "
        f"{args.splits} random splits, delta {args.delta}; means over the test halves. "
        f"True-rate violations: {args.splits} calibration draws of {n // 2} with replacement, "
        "thresholds judged on all the ads:\n"
    )
    report.print(markdown_table(HEADER, rows))
    report.save(payload)


if __name__ == "__main__":
    main()
