"""Fit a checkpoint's decisions (``adpolicy calibrate``): per learned policy a calibration and
a Learn-then-Test band on labelled validation ads, per analyzer policy its rule's review margin,
stored in the checkpoint's config (and so in every later export's manifest).

Learned policies (:mod:`ensemble.training.calibrate`): the calibration is chosen by
cross-fitted ECE, the band's thresholds by Learn then Test, both on the raw scores. The
thresholds stay on the raw score (as the flag threshold does): an isotonic calibration is flat
over stretches of scores, and thresholds on its output could not split them, so the bands
would send more ads to review for the same guarantee. A learned policy without
:data:`MIN_PER_CLASS` labelled ads of each class among those it applies to keeps what it
had (nothing, or an earlier fit). Analyzer policies (:class:`encoders.rules.ReviewMargin`) need no data.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.registry import get_entry
from encoders.rules import ReviewMargin
from ensemble.config import ModelConfig, Policy
from ensemble.decisions import Band
from ensemble.pretrained import CONFIG_FILE, from_pretrained
from ensemble.training.calibrate import Targets, fit_calibration, learn_then_test
from ensemble.training.data import ClassRule, file_sha256, label_tensors, read_manifest
from ensemble.training.evaluate import score_ads

# Labelled ads of each class a policy's calibration and band need: fitted on fewer (one
# positive), temperature scaling ran to its bound and read as perfectly calibrated
MIN_PER_CLASS = 10


def margin_band(margin: ReviewMargin) -> Band:
    """The band of an analyzer policy: review when the rule's logit is within the margin."""
    return Band(
        1 / (1 + math.exp(margin.logit)),
        1 / (1 + math.exp(-margin.logit)),
        "margin",
        {"margin": margin.size, "unit": margin.unit, "measurement": margin.measurement},
    )


def rule_margin(config: ModelConfig, policy: Policy) -> ReviewMargin | None:
    """The review margin of a policy scored only by analyzers whose rules share one (None for
    a learned policy, or analyzers with none or different ones)."""
    entries = [get_entry(config.encoders[k].type) for k in policy.heads]
    if any(e.kind != "analyzer" for e in entries):
        return None
    margins = {getattr(e.rule, "REVIEW", None) for e in entries}
    return margins.pop() if len(margins) == 1 else None


def fit_policy(
    policy: Policy, scores: np.ndarray, labels: np.ndarray, targets: Targets
) -> tuple[Policy, dict[str, Any]]:
    """A learned policy with its calibration and band fitted on raw ``scores`` [N] and 0/1
    ``labels`` [N], and a report line (ECE before and after: cross-fitted, as the method was
    chosen)."""
    calibration = fit_calibration(scores, labels)
    ece = calibration.ece or {}
    band = learn_then_test(scores, labels, targets)
    report = {
        "n": len(labels),
        "positives": int(labels.sum()),
        "calibration": calibration.method,
        "ece_before": ece["identity"],
        "ece_after": ece.get(calibration.method, ece["identity"]),
        "allow": band.allow if math.isfinite(band.allow) else None,  # None: never
        "block": band.block if math.isfinite(band.block) else None,
        **band.calibration,
    }
    fitted = dataclasses.replace(
        policy, calibration=calibration, band=band.as_band(calibration.method)
    )
    return fitted, report


def fit_decisions(
    config: ModelConfig,
    scores: np.ndarray,
    labels: np.ndarray,
    known: np.ndarray,
    targets: Targets,
) -> tuple[tuple[Policy, ...], dict[str, dict[str, Any]]]:
    """Every policy's decisions (see the module docstring).

    Args:
        config: The model config.
        scores: [N, P] raw scores.
        labels: [N, P] 0/1 labels.
        known: [N, P] bool, where the label is known and the policy applies.
        targets: The learned policies' targets.

    Returns:
        The policies with their calibrations and bands, and per policy what was done.
    """
    policies: list[Policy] = []
    report: dict[str, dict[str, Any]] = {}
    for j, policy in enumerate(config.policies):
        margin = rule_margin(config, policy)
        rows = known[:, j]
        if margin is not None:
            policies.append(dataclasses.replace(policy, band=margin_band(margin)))
            report[policy.name] = {"margin": f"{margin.size:g} {margin.unit}"}
        elif not policy.calibrated:
            policies.append(policy)
            report[policy.name] = {"kept": "untrained head"}
        elif min(positives := int(labels[rows, j].sum()), int(rows.sum()) - positives) < (
            MIN_PER_CLASS
        ):
            policies.append(policy)
            report[policy.name] = {
                "kept": f"needs {MIN_PER_CLASS} labelled ads of each class "
                f"(has {positives} positive, {int(rows.sum()) - positives} negative)"
            }
        else:
            fitted, report[policy.name] = fit_policy(
                policy, scores[rows, j].astype(np.float64), labels[rows, j], targets
            )
            policies.append(fitted)
    return tuple(policies), report


def _macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Macro-F1 of integer class arrays (classes absent from both count 0, as sklearn's)."""
    f1 = []
    for c in range(classes):
        tp = np.sum((truth == c) & (predicted == c))
        fp, fn = np.sum((truth != c) & (predicted == c)), np.sum((truth == c) & (predicted != c))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1))


def rule_thresholds(
    rule: ClassRule,
    policies: Sequence[str],
    scores: np.ndarray,
    classes: Sequence[str],
    groups: Sequence[str],
    grid: np.ndarray | None = None,
) -> tuple[dict[str, float], float]:
    """The flag thresholds of ``rule``'s policies that maximise the mean, over ``groups``
    (e.g. each source of the validation ads), of the rule's macro-F1.

    Each policy's own best-F1 threshold serves that policy alone; the class an ad gets
    depends on all of them together, and a source whose rarest class is one policy's
    (Davidson's hate speech) moves its macro-F1 far more than that policy's pooled F1 shows.

    Args:
        rule: The class rule (its policies are thresholded).
        policies: Column names of ``scores``.
        scores: [N, P] raw scores.
        classes: N true class names (``rule.names``).
        groups: N group names; each group weighs the same.
        grid: Candidate thresholds (default 0.02 to 0.98 by 0.01).

    Returns:
        Policy -> threshold, and the mean macro-F1 they reach.
    """
    grid = np.arange(2, 99) / 100 if grid is None else grid  # 0.63, not 0.6299999999999999
    names = rule.names
    truth = np.array([names.index(c) for c in classes])
    group = np.asarray(groups)
    members = [group == g for g in sorted(set(groups))]
    ruled = [policy for _, policy in rule.classes]
    columns = scores[:, [policies.index(policy) for policy in ruled]]
    best: tuple[float, tuple[float, ...]] = (-1.0, ())
    for values in itertools.product(grid, repeat=len(ruled)):
        predicted = rule.class_index(columns >= np.asarray(values), ruled)
        score = float(np.mean([_macro_f1(truth[m], predicted[m], len(names)) for m in members]))
        if score > best[0]:
            best = (score, tuple(float(v) for v in values))
    chosen = {policy: v for (_, policy), v in zip(rule.classes, best[1], strict=True)}
    return chosen, best[0]


def calibrate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    targets: Targets,
    *,
    rule: ClassRule | None = None,
    out: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Fit the decisions of a checkpoint on a labelled manifest and store them.

    Args:
        checkpoint: The checkpoint directory.
        data: Labelled validation ads (JSONL manifest).
        targets: The learned policies' targets.
        rule: Also set the flag thresholds of this class rule's policies to
            :func:`rule_thresholds` over the ads' ``meta.class``, weighing each
            ``meta.source`` the same (reported under ``"thresholds"``).
        out: Where the calibrated checkpoint goes (a copy; weights unchanged); None: in place.
        batch_size: Ads per forward pass.
        device: Where the model runs.
        progress: Show a progress bar while scoring.

    Returns:
        The checkpoint directory written, and per policy what was fitted.
    """
    model = from_pretrained(checkpoint)
    ads = read_manifest(data)
    scores, applicable = score_ads(
        model, ads, base_dir=Path(data).parent, batch_size=batch_size, device=device,
        progress=progress,
    )  # fmt: skip
    targets_t, mask = label_tensors(ads, model.config.policy_names)
    labels = (targets_t.numpy() >= 0.5).astype(np.int64)
    known = mask.numpy().astype(bool) & applicable
    config = model.config
    chosen: dict[str, Any] = {}
    if rule is not None:
        classes = [ad.get("meta", {}).get("class") for ad in ads]
        if any(c not in rule.names for c in classes):
            raise ValueError(f"every ad needs meta.class, one of {rule.names}, for the rule")
        sources = [str(ad.get("meta", {}).get("source", "")) for ad in ads]
        thresholds, f1 = rule_thresholds(rule, config.policy_names, scores, classes, sources)
        config = config.with_policies(
            tuple(
                dataclasses.replace(p, threshold=thresholds.get(p.name, p.threshold))
                for p in config.policies
            )
        )
        chosen = {"thresholds": {**thresholds, "mean_macro_f1": f1}}
    policies, report = fit_decisions(config, scores, labels, known, targets)
    report = {**report, **chosen}
    target = Path(out) if out is not None else Path(checkpoint)
    if target.resolve() != Path(checkpoint).resolve():
        shutil.copytree(checkpoint, target, dirs_exist_ok=True)
    path = target / CONFIG_FILE
    stored = json.loads(path.read_text())  # rewritten as stored: relative paths stay relative
    stored["policies"] = [p.to_json() for p in policies]
    if chosen or any("kept" not in r and "margin" not in r for r in report.values()):
        stored.setdefault("checkpoint", {})["decisions"] = {  # what the new fits came from
            **dataclasses.asdict(targets),
            "data": {"file": Path(data).name, "sha256": file_sha256(data), "n": len(ads)},
            **chosen,  # the rule's flag thresholds, when they were chosen here
        }
    path.write_text(json.dumps(stored, indent=2) + "\n")
    return target, report


def format_report(report: Mapping[str, Mapping[str, Any]]) -> str:
    """The per-policy table ``adpolicy calibrate`` prints."""
    header = ("policy", "n", "calibration", "ECE before", "ECE after", "allow <", "block >=",
              "block precision", "allow miss rate", "review share")  # fmt: skip
    lines = ["  ".join(header)]
    for name, r in report.items():
        if name == "thresholds":
            chosen = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k != "mean_macro_f1")
            lines.append(f"flag thresholds: {chosen} (mean macro-F1 {r['mean_macro_f1']:.4f})")
            continue
        if "calibration" not in r:
            lines.append(f"{name}  {r.get('margin', r.get('kept'))}")
            continue
        values: Sequence[Any] = (
            name, r["n"], r["calibration"], r["ece_before"], r["ece_after"], r["allow"],
            r["block"], r["block_precision"], r["allow_miss_rate"], r["review_share"],
        )  # fmt: skip
        lines.append("  ".join(_cell(v) for v in values))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "never"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
