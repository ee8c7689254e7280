"""Allow / review / block bands by Learn then Test on labelled data: what they achieve and
how often a target fails over random calibration / test splits.

For each policy and each (block precision, allow miss rate) target: the labelled ads are split
at random into a calibration half, where :func:`ensemble.training.calibrate.learn_then_test`
picks the two thresholds, and a test half, where the achieved block precision, allow miss rate
and review share are measured. Over ``--splits`` splits the table gives the mean of each and
the share of splits in which the test half misses a target. That share is an upper estimate of
the guarantee's failure rate (at most ``delta`` on the true rates): the test half's own
sampling noise adds misses of its own.

    python -m benchmarks.decision_bands --data runs/davidson/test.jsonl [--model CHECKPOINT]
        [--targets 0.95:0.02,0.9:0.05,0.8:0.1] [--delta 0.1] [--splits 100]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Report, markdown_table
from ensemble.pretrained import from_pretrained
from ensemble.scoring import DEFAULT_DIR
from ensemble.training.calibrate import learn_then_test, outcome
from ensemble.training.data import label_tensors, read_manifest
from ensemble.training.evaluate import score_ads

log = logging.getLogger(__name__)
HEADER = (
    "policy",
    "block precision target",
    "allow miss target",
    "block precision",
    "allow miss rate",
    "review share",
    "splits missing a target",
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
) -> dict[str, float]:
    """Mean test-half outcome and the share of splits missing a target."""
    precision, miss = targets
    outcomes, missed = [], 0
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(scores))
        cal, test = order[: len(order) // 2], order[len(order) // 2 :]
        band = learn_then_test(
            scores[cal], labels[cal], block_precision=precision, allow_miss_rate=miss, delta=delta
        )
        got = outcome(scores[test], labels[test], band.allow, band.block)
        outcomes.append(got)
        missed += got["block_precision"] < precision or got["allow_miss_rate"] > miss
    mean = {k: float(np.mean([o[k] for o in outcomes])) for k in outcomes[0]}
    return {**mean, "missed_share": missed / splits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled JSONL manifest")
    parser.add_argument("--model", type=Path, default=DEFAULT_DIR, help="checkpoint directory")
    parser.add_argument("--targets", default="0.95:0.02,0.9:0.05,0.8:0.1")
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--results", help="results file name (default: decision_bands)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    report = Report("decision_bands", args.results)
    model = from_pretrained(args.model)
    ads = read_manifest(args.data)
    scores, applicable = score_ads(model, ads, base_dir=args.data.parent, progress=False)
    targets, known = label_tensors(ads, model.config.policy_names)
    rows: list[list[Any]] = []
    payload: dict[str, Any] = {"data": str(args.data), "n": len(ads), "delta": args.delta}
    for j, policy in enumerate(model.config.policy_names):
        keep = applicable[:, j] & (known[:, j].numpy() > 0)
        if keep.sum() < 100:
            continue
        labels = (targets[:, j].numpy()[keep] >= 0.5).astype(int)
        for target in parse_targets(args.targets):
            got = split_runs(scores[keep, j], labels, target, delta=args.delta, splits=args.splits)
            payload.setdefault(policy, []).append({"targets": target, **got})
            rows.append(
                [
                    policy,
                    *target,
                    got["block_precision"],
                    got["allow_miss_rate"],
                    got["review_share"],
                    got["missed_share"],
                ]
            )
    report.print(
        f"{len(ads)} labelled ads of {args.data.name}; calibration / test halves, "
        f"{args.splits} random splits, delta {args.delta}; means over the test halves:\n"
    )
    report.print(markdown_table(HEADER, rows))
    report.save(payload)


if __name__ == "__main__":
    main()
