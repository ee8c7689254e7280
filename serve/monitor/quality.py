"""Model quality against labels: per policy the training engineer's evaluation metrics.

Labels come in the training manifests' format (:func:`ensemble.training.data.read_manifest`): lines with
an ``id`` and ``labels: {policy: 0 | 1}``; any ad fields may be there too. A missing or null
label is unknown and left out; a soft label (a vote share) counts as 1 from 0.5 up. Metrics are
:func:`ensemble.training.evaluate.policy_metrics` (precision, recall, F1, ROC-AUC, PR-AUC, ECE, the
confusion) at the threshold the model flagged with, plus accuracy.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.training.data import read_manifest
from ensemble.training.evaluate import policy_metrics

log = logging.getLogger(__name__)

Labels = dict[str, dict[str, int]]  # ad id -> policy -> 0 | 1
Scored = Mapping[str, tuple[float, float]]  # ad id -> (score, threshold) of one policy


def labels_of(ads: Iterable[Mapping[str, Any]]) -> Labels:
    """Ad id -> its known labels as 0/1, from manifest rows (ads without labels left out)."""
    out: Labels = {}
    repeated = 0
    for ad in ads:
        known = {p: int(v >= 0.5) for p, v in (ad.get("labels") or {}).items() if v is not None}
        if known:
            repeated += str(ad["id"]) in out
            out[str(ad["id"])] = known
    if repeated:
        log.warning(
            "%d labelled ads repeat an earlier one's id: labels and scores are joined by id, "
            "so each id counts once, with its last labels; give each ad its own id",
            repeated,
        )
    return out


def read_labels(path: str | Path) -> Labels:
    """Ad id -> its labels, from a JSONL manifest.

    Raises:
        ValueError: A line is not a JSON object, or a label is outside [0, 1].
    """
    return labels_of(read_manifest(path))


def labelled_metrics(scored: Mapping[str, Scored], labels: Labels) -> dict[str, dict[str, Any]]:
    """Per policy, the metrics over the ads that have both a score and a label.

    Args:
        scored: Policy -> ad id -> (score, threshold) (``Observations.scored``).
        labels: Ad id -> policy -> label.

    Returns:
        Policy -> :func:`ensemble.training.evaluate.policy_metrics` plus ``accuracy`` and, when records
        used several thresholds (several model versions), ``thresholds_seen``; the metrics are
        at the most common threshold.
    """
    out = {}
    for policy, by_ad in sorted(scored.items()):
        pairs = [(by_ad[ad], labels[ad][policy]) for ad in by_ad if policy in labels.get(ad, {})]
        if not pairs:
            continue
        thresholds = Counter(threshold for (_, threshold), _ in pairs)
        metrics = policy_metrics(
            np.array([score for (score, _), _ in pairs]),
            np.array([label for _, label in pairs]),
            thresholds.most_common(1)[0][0],
        )
        confusion = metrics["confusion"]
        metrics["accuracy"] = (confusion["tp"] + confusion["tn"]) / metrics["n"]
        if len(thresholds) > 1:
            metrics["thresholds_seen"] = sorted(thresholds)
        out[policy] = metrics
    return out
