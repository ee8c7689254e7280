"""``adpolicy text-check``: the text policies' must-show measurements in one run.

Per evaluation set, with the 3-class rule (hate if ``hate_speech`` is flagged, else offensive
if ``offensive_language`` is, else normal): accuracy and macro-F1, per-policy P/R/F1 and
ROC-AUC (a binary set, HateCheck's, whose non-hateful lines expect any class but hate: its
accuracy, no macro-F1); where the ads name a group (``meta.group``): each policy's flag rate
per group, and on labelled sets the bias AUCs of Borkan et al. (2019) per group (subgroup AUC,
BPSN: background positives with subgroup negatives, BNSP: background negatives with subgroup
positives); where they name a functionality (``meta.functionality``): the accuracy of each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ensemble.model import AdPolicyEnsemble
from ensemble.training.data import read_manifest
from ensemble.training.evaluate import measure, score_ads
from ensemble.training.textdata import HATEXPLAIN_RULE, NOT_HATE

SETS = {  # name -> manifest file name; data sets first, then the generated sets
    "hatexplain_test": "hatexplain_test.jsonl",
    "davidson_test_raw": "davidson_test.jsonl",
    "benign_ads": "benign_ads.jsonl",
    "idiom_ads": "idiom_ads.jsonl",
    "behaviour": "behaviour.jsonl",
    "toxigen_test": "toxigen_test.jsonl",
    "hatecheck": "hatecheck.jsonl",
}


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def bias_aucs(labels: np.ndarray, scores: np.ndarray, in_group: np.ndarray) -> dict[str, Any]:
    """Borkan et al. (2019) AUCs of one group.

    Args:
        labels: [N] 0/1; scores: [N]; in_group: [N] bool.
    """
    pos, neg = labels == 1, labels == 0
    bpsn = (pos & ~in_group) | (neg & in_group)
    bnsp = (neg & ~in_group) | (pos & in_group)
    return {
        "subgroup_auc": _auc(labels[in_group], scores[in_group]),
        "bpsn_auc": _auc(labels[bpsn], scores[bpsn]),
        "bnsp_auc": _auc(labels[bnsp], scores[bnsp]),
    }


def is_right(predicted: str, expected: str) -> bool:
    """Whether a 3-class prediction meets an expected class: the same class, or, where
    :data:`NOT_HATE` is expected (HateCheck's non-hateful cases), any class but hate."""
    return predicted == expected or (expected == NOT_HATE and predicted != "hate")


def check_set(
    model: AdPolicyEnsemble, ads: Sequence[Mapping[str, Any]], *, progress: bool = False
) -> dict[str, Any]:
    """All measurements of one set (see the module docstring)."""
    assert model.config is not None
    policies = model.config.policy_names
    config = model.config
    readers = {k for k in config.encoders if config.modality(k) == "text"}
    text = [j for j, p in enumerate(config.policies) if readers & set(p.heads)]
    missing = next((i for i, ad in enumerate(ads) if "class" not in ad.get("meta", {})), None)
    if missing is not None:
        raise ValueError(f"line {missing + 1}: no meta.class (the class the line should get)")
    scores, applicable = score_ads(model, ads, progress=progress)
    thresholds = [p.threshold for p in config.policies]
    truth = [ad["meta"]["class"] for ad in ads]
    binary = NOT_HATE in truth
    result = measure(
        policies, thresholds, scores, applicable, ads, None if binary else HATEXPLAIN_RULE
    )
    flags = scores >= np.asarray(thresholds)[None, :]
    predicted = HATEXPLAIN_RULE.classify(torch.from_numpy(flags), policies)
    right = np.array([is_right(p, t) for p, t in zip(predicted, truth, strict=True)])
    out: dict[str, Any] = {
        "n": len(ads),
        "accuracy": float(right.mean()),
        "macro_f1": result.classes["macro_f1"] if result.classes else None,
        "policies": {
            policies[j]: {
                k: result.metrics[policies[j]].get(k)
                for k in ("precision", "recall", "f1", "roc_auc")
            }
            | {"flag_rate": float(flags[:, j].mean())}
            for j in text
            if policies[j] in result.metrics
        },
    }
    groups = [ad.get("meta", {}).get("group") for ad in ads]
    if any(groups):
        table: dict[str, Any] = {}
        for group in sorted({g for g in groups if g}):
            rows = np.array([g == group for g in groups])
            entry: dict[str, Any] = {"n": int(rows.sum())}
            for j in text:
                entry[f"{policies[j]}_flag_rate"] = float(flags[rows, j].mean())
                labels = result.labels[:, j]
                if 0 < labels.sum() < len(labels):
                    entry[policies[j]] = bias_aucs(labels, scores[:, j], rows)
            table[group] = entry
        out["groups"] = table
    functionalities = [ad.get("meta", {}).get("functionality") for ad in ads]
    if any(functionalities):
        table = {}
        for name in dict.fromkeys(f for f in functionalities if f):
            members = [i for i, f in enumerate(functionalities) if f == name]
            table[name] = {
                "expected": truth[members[0]],
                "n": len(members),
                "accuracy": float(right[members].mean()),
            }
        out["functionalities"] = table
    return out


def text_check(
    model: AdPolicyEnsemble, directories: Sequence[str | Path], *, progress: bool = False
) -> dict[str, Any]:
    """:func:`check_set` of every set of :data:`SETS` found in ``directories``."""
    report = {}
    for name, file in SETS.items():
        for directory in directories:
            path = Path(directory) / file
            if path.is_file():
                try:
                    report[name] = check_set(model, read_manifest(path), progress=progress)
                except ValueError as err:
                    raise ValueError(f"{path}: {err}") from None
                break
    if not report:
        raise ValueError(
            f"none of {sorted(SETS.values())} in {[str(d) for d in directories]}: "
            "write them with `adpolicy data text-policies` and `adpolicy data text-sets`"
        )
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The report as plain-text tables."""

    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"{'set':<20} {'n':>6} {'accuracy':>9} {'macro-F1':>9}  flag rate per policy"]
    for name, r in report.items():
        rates = ", ".join(f"{p} {f(m['flag_rate'])}" for p, m in r["policies"].items())
        lines.append(f"{name:<20} {r['n']:>6} {f(r['accuracy']):>9} {f(r['macro_f1']):>9}  {rates}")
    for name, r in report.items():
        if "groups" in r:
            lines.append(f"\n{name}: per group (flag rates; hate_speech subgroup/BPSN/BNSP AUC)")
            for group, g in r["groups"].items():
                rates = " ".join(
                    f"{k.removesuffix('_flag_rate')} {f(v)}"
                    for k, v in g.items()
                    if k.endswith("_flag_rate")
                )
                aucs = g.get("hate_speech")
                bias = (
                    f"  {f(aucs['subgroup_auc'])}/{f(aucs['bpsn_auc'])}/{f(aucs['bnsp_auc'])}"
                    if aucs
                    else ""
                )
                lines.append(f"  {group:<14} n={g['n']:<4} {rates}{bias}")
        if "functionalities" in r:
            lines.append(f"\n{name}: per functionality")
            for func, m in r["functionalities"].items():
                lines.append(f"  {func:<22} {m['expected']:<10} n={m['n']:<4} {f(m['accuracy'])}")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
