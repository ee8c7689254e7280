"""Model quality against labels: accuracy, precision, recall and F1 per policy.

Labels are JSONL lines with an ``id`` and ``labels: {policy: 0 | 1}`` (the training manifests'
format: any ad fields may be there too, only these two are read). A prediction is the policy's
flag; ads where the policy was not scored, or that have no label for it, are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Labels = dict[str, dict[str, int]]  # ad id -> policy -> 0 | 1


def read_labels(path: str | Path) -> Labels:
    """Ad id -> its labels, from a JSONL file; lines without an id or labels are skipped.

    Raises:
        ValueError: A line is not JSON, or a label is not 0 or 1.
    """
    labels: Labels = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON: {err.msg}") from err
        if "id" not in row or not isinstance(row.get("labels"), Mapping):
            continue
        for policy, value in row["labels"].items():
            if value not in (0, 1):
                raise ValueError(f"{path}:{number}: label {policy}={value!r} is not 0 or 1")
        labels[str(row["id"])] = {p: int(v) for p, v in row["labels"].items()}
    return labels


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def binary_metrics(truth: list[int], predicted: list[bool]) -> dict[str, Any]:
    """Confusion counts and metrics of one policy.

    Args:
        truth: Labels, 0 or 1.
        predicted: Flags, in the same order.

    Returns:
        ``count``, ``positives``, ``tp``, ``fp``, ``fn``, ``accuracy``, ``precision``,
        ``recall``, ``f1``; a metric whose denominator is 0 is None.
    """
    tp = sum(t == 1 and p for t, p in zip(truth, predicted, strict=True))
    fp = sum(t == 0 and p for t, p in zip(truth, predicted, strict=True))
    fn = sum(t == 1 and not p for t, p in zip(truth, predicted, strict=True))
    count = len(truth)
    return {
        "count": count,
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "accuracy": _ratio(count - fp - fn, count),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def labelled_metrics(
    predictions: Mapping[str, Mapping[str, bool]], labels: Labels
) -> dict[str, dict[str, Any]]:
    """Per policy, :func:`binary_metrics` over the ads that have both a flag and a label.

    Args:
        predictions: Policy -> ad id -> flagged (``Observations.predictions``).
        labels: Ad id -> policy -> label.

    Returns:
        Policy -> metrics, for the policies with at least one labelled, scored ad.
    """
    out = {}
    for policy, flags in sorted(predictions.items()):
        pairs = [
            (labels[ad][policy], flagged)
            for ad, flagged in flags.items()
            if policy in labels.get(ad, {})
        ]
        if pairs:
            out[policy] = binary_metrics([t for t, _ in pairs], [p for _, p in pairs])
    return out
