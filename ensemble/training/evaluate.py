"""Evaluation: per-policy metrics of an ensemble on a labelled manifest, and the threshold rule.

Each policy is measured over the ads whose label for it is known and that it applies to (a
present modality has a head for it); soft labels count as positive from 0.5. Metrics:
precision, recall, F1 and the confusion at the policy's threshold (flag when score >=
threshold), ROC-AUC, PR-AUC (average precision), the Brier score and the expected calibration
error (ECE: 10 equal-width score bins, the bin-size-weighted mean of |positive rate - mean
score|). A :class:`~ensemble.training.data.ClassRule` adds multi-class accuracy and macro-F1 against
each ad's ``meta.class``. Scores come from the ensemble's own forward (the served graph's
raw numbers), texts batched by length with the padding cut. A policy with a stored calibration
(``adpolicy calibrate``) also gets its ECE after it (what rows report) and the reliability
bins before and after; one with a band gets what the band decides on the data (block
precision, allow miss rate, review share).

Threshold rule (:func:`choose_threshold`), applied on validation data by training: the
threshold maximising F1, the candidates being the distinct validation scores; ties go to the
highest candidate (fewer flags at the same F1).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)
from tqdm import tqdm

from encoders.base import MODALITIES
from ensemble.config import Policy
from ensemble.decisions import outcome
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import Scorer
from ensemble.training.data import ClassRule, label_tensors

log = logging.getLogger(__name__)
ECE_BINS = 10


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold rule: maximise F1 over the distinct scores, ties to the highest.

    Args:
        scores: [N] scores in [0, 1].
        labels: [N] 0/1, both classes present.

    Returns:
        (threshold, F1 at it).
    """
    if labels.min() == labels.max():
        raise ValueError("choosing a threshold needs positive and negative labels")
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return float(thresholds[best]), float(f1[best])


def reliability_bins(
    scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins over [0, 1].

    Returns:
        mean score [bins], positive rate [bins] (NaN where empty), count [bins].
    """
    which = np.minimum((scores * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    total = np.bincount(which, weights=scores, minlength=bins)
    positive = np.bincount(which, weights=labels, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count, positive / count, count


def expected_calibration_error(
    scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: sum over bins of (bin size / N) * |positive rate - mean score|."""
    mean, rate, count = reliability_bins(scores, labels, bins)
    filled = count > 0
    return float(np.sum(count[filled] / count.sum() * np.abs(rate[filled] - mean[filled])))


def policy_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Metrics of one policy.

    Args:
        scores: [N] scores in [0, 1].
        labels: [N] 0/1.
        threshold: Flag when score >= threshold.

    Returns:
        JSON-ready metrics; the ranking ones are None unless both classes are present.
    """
    flags = scores >= threshold
    tn, fp, fn, tp = confusion_matrix(labels, flags, labels=[0, 1]).ravel().tolist()
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, flags, average="binary", zero_division=0
    )
    both = 0 < labels.sum() < len(labels)
    return {
        "n": len(labels),
        "positives": int(labels.sum()),
        "threshold": threshold,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": float(average_precision_score(labels, scores)) if both else None,
        "brier": float(np.mean((scores - labels) ** 2)),
        "ece": expected_calibration_error(scores, labels),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def class_metrics(
    truth: Sequence[str], predicted: Sequence[str], names: Sequence[str]
) -> dict[str, Any]:
    """Multi-class accuracy, macro-F1, per-class precision / recall / F1 and the confusion."""
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(names), zero_division=0
    )
    return {
        "n": len(truth),
        "accuracy": float(np.mean(np.asarray(truth) == np.asarray(predicted))),
        "macro_f1": float(f1_score(truth, predicted, labels=list(names), average="macro")),
        "per_class": {
            n: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for n, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion": {
            "labels": list(names),
            "rows_true": confusion_matrix(truth, predicted, labels=list(names)).tolist(),
        },
    }


@dataclass
class Evaluation:
    """Scores, labels and metrics of one data set.

    Attributes:
        policies: Policy names, the columns of the arrays.
        scores: [N, P] scores in [0, 1].
        labels: [N, P] hard 0/1 labels.
        known: [N, P] bool, where the label is known and the policy applies.
        thresholds: [P] the policies' thresholds.
        metrics: Policy -> :func:`policy_metrics` (policies with known labels only).
        classes: :func:`class_metrics` of a class rule, with the rule's reference results.
        calibrated: [N, P] the probabilities rows report (:func:`add_decisions`; the raw
            scores where a policy has no calibration), None until then.
    """

    policies: list[str]
    scores: np.ndarray
    labels: np.ndarray
    known: np.ndarray
    thresholds: np.ndarray
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[str, Any] | None = None
    calibrated: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {"n": int(self.scores.shape[0]), "policies": self.metrics, "classes": self.classes}


def score_ads(
    model: AdPolicyEnsemble,
    ads: Sequence[Mapping[str, Any]],
    *,
    base_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every policy by the ensemble's forward, calibrated or not.

    Returns:
        scores [N, P] float32 and applicable [N, P] bool (a present modality has a head).

    Raises:
        ValueError: Ads that cannot be prepared, with their ids.
    """
    scorer = Scorer(model, device=device, batch_size=batch_size)
    scores, presence = [], []
    scored = scorer.iter_scored(ads, base_dir=base_dir, on_error="raise", total=len(ads))
    for item in tqdm(scored, total=len(ads), desc="scoring", disable=not progress):
        assert item.scores is not None  # on_error="raise": every ad is scored
        assert item.prepared is not None
        scores.append(item.scores.numpy())
        presence.append(item.prepared.presence)
    config = scorer.config
    heads = np.array([[config.modality(k) == m for m in MODALITIES] for k in model.keys])
    scored_by = np.array([[k in p.heads for p in config.policies] for k in model.keys])
    # [N, modalities] @ [modalities, encoders] @ [encoders, policies]
    present = np.array(presence, dtype=int).reshape(-1, len(MODALITIES))
    applicable = (present @ heads.T.astype(int) @ scored_by.astype(int)) > 0
    return np.array(scores, dtype=np.float32).reshape(-1, len(config.policies)), applicable


def measure(
    policies: Sequence[str],
    thresholds: Sequence[float],
    scores: np.ndarray,
    applicable: np.ndarray,
    ads: Sequence[Mapping[str, Any]],
    rule: ClassRule | None = None,
) -> Evaluation:
    """Metrics of given scores against the ads' labels (and ``meta.class`` under ``rule``).

    Args:
        policies: Policy names, the columns of ``scores``.
        thresholds: One threshold per policy.
        scores: [N, P] scores.
        applicable: [N, P] bool.
        ads: The N ads, with ``labels`` (and ``meta.class`` when ``rule`` is given).
        rule: Derives one class per ad from the flags.
    """
    targets, mask = label_tensors(ads, policies)
    labels = (targets.numpy() >= 0.5).astype(np.int64)
    known = mask.numpy().astype(bool) & applicable
    result = Evaluation(list(policies), scores, labels, known, np.asarray(thresholds, dtype=float))
    for j, name in enumerate(policies):
        rows = known[:, j]
        if rows.any():
            result.metrics[name] = policy_metrics(scores[rows, j], labels[rows, j], thresholds[j])
    if rule is not None:
        truth = [ad.get("meta", {}).get("class") for ad in ads]
        if None in truth:
            raise ValueError("a class rule needs meta.class on every ad")
        flags = torch.from_numpy(scores >= result.thresholds[None, :])
        predicted = rule.classify(flags, list(policies))
        result.classes = class_metrics(truth, predicted, rule.names)
        result.classes["reference"] = dict(rule.reference or {})
    return result


def add_decisions(evaluation: Evaluation, policies: Sequence[Policy]) -> None:
    """Add each measured policy's calibration (method, ``ece_calibrated``) and band outcome
    (``decisions``: :func:`ensemble.decisions.outcome` on the raw scores) to its metrics.

    Args:
        evaluation: What :func:`measure` returned (its columns in the order of ``policies``).
        policies: The policies of the model's config.
    """
    evaluation.calibrated = np.stack(
        [p.calibrate(evaluation.scores[:, j]) for j, p in enumerate(policies)], axis=1
    )
    for j, policy in enumerate(policies):
        metrics = evaluation.metrics.get(policy.name)
        if metrics is None:
            continue
        rows = evaluation.known[:, j]
        labels = evaluation.labels[rows, j]
        metrics["calibration"] = policy.calibration.method if policy.calibration else None
        metrics["ece_calibrated"] = expected_calibration_error(
            evaluation.calibrated[rows, j], labels
        )
        if policy.band is not None:
            band = policy.band
            metrics["decisions"] = {
                "method": band.method,
                "allow": band.allow,
                "block": band.block,
                **outcome(evaluation.scores[rows, j], labels, band.allow, band.block),
            }


def evaluate(
    model: AdPolicyEnsemble,
    ads: Sequence[Mapping[str, Any]],
    *,
    rule: ClassRule | None = None,
    base_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Evaluation:
    """Score ``ads`` with ``model`` and measure every policy at its configured threshold, its
    calibration and its band (:func:`add_decisions`).

    Raises:
        ValueError: No ad labels any of the model's policies, nor (with ``rule``) gives
            every ad its ``meta.class``: there is nothing to measure (checked before scoring).
    """
    names = set(model.config.policy_names)
    classed = rule is not None and all("class" in (ad.get("meta") or {}) for ad in ads)
    if not classed and not any(names & set(ad.get("labels") or {}) for ad in ads):
        raise ValueError(f"no ad labels any of the model's policies {sorted(names)}")
    scores, applicable = score_ads(
        model, ads, base_dir=base_dir, batch_size=batch_size, device=device, progress=progress
    )
    config = model.config
    thresholds = [p.threshold for p in config.policies]
    result = measure(config.policy_names, thresholds, scores, applicable, ads, rule)
    add_decisions(result, config.policies)
    return result
