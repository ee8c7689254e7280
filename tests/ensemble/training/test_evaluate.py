"""Metrics against hand-computed values, the threshold rule, the report, and the scoring path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ensemble import Scorer, build_ensemble
from ensemble.training.data import DAVIDSON_RULE
from ensemble.training.evaluate import (
    choose_threshold,
    class_metrics,
    evaluate,
    expected_calibration_error,
    measure,
    policy_metrics,
    score_ads,
)
from ensemble.training.report import write_report
from tests.ensemble.training.train_data import keyword_ads, text_config

SCORES = np.array([0.9, 0.8, 0.3, 0.2, 0.6])
LABELS = np.array([1, 0, 1, 0, 0])


def test_policy_metrics_match_hand_computed_values() -> None:
    m = policy_metrics(SCORES, LABELS, threshold=0.5)
    assert m["confusion"] == {"tp": 1, "fp": 2, "fn": 1, "tn": 1}
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.4)
    # positive/negative pairs ranked right: 0.9 beats all three negatives, 0.3 beats 0.2
    assert m["roc_auc"] == pytest.approx(4 / 6)
    # average precision: recall steps at ranks 1 (P=1) and 4 (P=2/4)
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert m["brier"] == pytest.approx(np.mean((SCORES - LABELS) ** 2))


def test_threshold_at_or_above_flags() -> None:
    m = policy_metrics(SCORES, LABELS, threshold=0.3)
    assert m["confusion"]["tp"] == 2  # 0.3 >= 0.3


def test_ece_of_bins() -> None:
    # bin [0.8, 0.9): scores 0.8, 0.8, rate 1/2 -> |0.5 - 0.8| = 0.3; bin [0.1, 0.2): 0.1, rate 0
    scores = np.array([0.8, 0.8, 0.1])
    labels = np.array([1, 0, 0])
    assert expected_calibration_error(scores, labels) == pytest.approx(2 / 3 * 0.3 + 1 / 3 * 0.1)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_threshold_rule_maximises_f1_and_breaks_ties_upwards() -> None:
    threshold, f1 = choose_threshold(SCORES, LABELS)
    # candidates: 0.9 -> F1 2/3; 0.3 -> P 2/4, R 1 -> F1 2/3; the higher one wins the tie
    assert (threshold, f1) == (pytest.approx(0.9), pytest.approx(2 / 3))
    threshold, f1 = choose_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 1, 0]))
    assert threshold == pytest.approx(0.35)
    assert f1 == pytest.approx(0.8)
    with pytest.raises(ValueError, match="positive and negative"):
        choose_threshold(SCORES, np.zeros(5, dtype=int))


def test_class_metrics() -> None:
    truth = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "b"]
    m = class_metrics(truth, predicted, ["a", "b", "c"])
    assert m["accuracy"] == 0.5
    # F1 a = 2/3 (P 1, R 1/2), b = 1/2 (P 1/3, R 1), c = 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["confusion"]["rows_true"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_measure_masks_unknown_labels_and_derives_classes() -> None:
    ads = [
        {"labels": {"offensive_language": 1, "hate_speech": 1}, "meta": {"class": "hate"}},
        {"labels": {"offensive_language": 1}, "meta": {"class": "offensive"}},
        {"labels": {"offensive_language": 0, "hate_speech": 0}, "meta": {"class": "neither"}},
        {"labels": {"offensive_language": 0.4, "hate_speech": 0}, "meta": {"class": "neither"}},
    ]
    scores = np.array([[0.9, 0.7], [0.8, 0.9], [0.1, 0.2], [0.6, 0.1]], dtype=np.float32)
    applicable = np.ones((4, 2), dtype=bool)
    result = measure(
        ["offensive_language", "hate_speech"], [0.5, 0.5], scores, applicable, ads, DAVIDSON_RULE
    )
    assert result.metrics["hate_speech"]["n"] == 3  # ad 1 has no hate_speech label
    assert result.metrics["offensive_language"]["positives"] == 2  # 0.4 counts as 0
    assert result.classes is not None
    # hate and neither right; the offensive ad flagged hate, the last neither ad offensive
    assert result.classes["accuracy"] == 0.5
    assert result.classes["confusion"]["rows_true"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert "hatesonar (tf-idf + logistic regression)" in result.classes["reference"]


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    config = text_config(tiny_bert_dir)
    policies = tuple(p.__class__(**{**p.__dict__, "calibrated": True}) for p in config.policies)
    return build_ensemble(config.with_policies(policies), seed=3)


def test_evaluate_scores_as_the_serving_path_does(tiny_model) -> None:
    ads = keyword_ads(24, seed=5)
    result = evaluate(tiny_model, ads, batch_size=5, progress=False)
    served = Scorer(tiny_model, batch_size=7).score(ads)
    for i, r in enumerate(served):
        for j, name in enumerate(result.policies):
            assert result.scores[i, j] == pytest.approx(r["policies"][name]["score"], abs=2e-6)
    assert result.known.all()


def test_report_has_tables_and_plots(tiny_model, tmp_path) -> None:
    ads = keyword_ads(30, seed=6)
    result = evaluate(tiny_model, ads, rule=DAVIDSON_RULE, progress=False)
    for fmt in ("md", "html"):
        path = write_report(result, tmp_path / fmt, title="tiny", fmt=fmt)
        text = path.read_text()
        for name in ("offensive_language", "hate_speech", "hatesonar", "macro-F1"):
            assert name in text
        for kind in ("pr", "reliability"):
            image = tmp_path / fmt / f"{kind}_hate_speech.png"
            assert f"{kind}_hate_speech.png" in text
            with Image.open(image) as im:
                assert im.size[0] > 100
    assert (tmp_path / "md" / "metrics.json").read_text().startswith("{")
    with pytest.raises(ValueError, match="format"):
        write_report(result, tmp_path, title="x", fmt="pdf")


def test_measure_uses_the_policy_thresholds(tiny_model) -> None:
    scores = torch.rand(10, 2).numpy()
    ads = keyword_ads(10, seed=7)
    low = measure(
        ["offensive_language", "hate_speech"], [0.0, 0.0], scores, np.ones((10, 2), bool), ads
    )
    assert low.metrics["offensive_language"]["recall"] == 1.0


def test_absent_modalities_are_skipped_without_changing_scores(small_model) -> None:
    ads = keyword_ads(3, seed=8)
    scores, applicable = score_ads(small_model, ads, progress=False)
    served = Scorer(small_model).score(ads)  # every encoder, placeholders for the absent ones
    names = small_model.config.policy_names
    assert applicable.tolist() == [[True, True, False]] * 3  # adult: image and video only
    for i, result in enumerate(served):
        for j, name in enumerate(names[:2]):
            assert scores[i, j] == pytest.approx(result["policies"][name]["score"], abs=2e-6)


def test_a_manifest_labelling_none_of_the_models_policies_is_refused(tiny_model) -> None:
    """Empty tables and exit 0 read as "measured, nothing to report": say what is missing."""
    ads: list[dict[str, Any]] = [
        {"id": "a", "text": "hi", "labels": {"spam": 1}},
        {"id": "b", "text": "tea"},
    ]
    with pytest.raises(ValueError, match=r"^no ad labels any of the model's policies \['"):
        evaluate(tiny_model, ads, progress=False)
    classed = [{**ad, "meta": {"class": "neither"}} for ad in ads]  # a class rule reads these
    assert evaluate(tiny_model, classed, rule=DAVIDSON_RULE, progress=False).classes
