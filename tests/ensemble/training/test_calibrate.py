"""Calibration maps and Learn-then-Test decision bands, on data whose truth is known."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ensemble.training.calibrate import (
    Calibration,
    TargetError,
    Targets,
    fit_calibration,
    learn_then_test,
    outcome,
)
from ensemble.training.evaluate import expected_calibration_error


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores U(0, 1) with P(violation | score) = score: block precision above t is
    (1 + t) / 2, the miss rate below t is t / 2."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=n)
    return scores, (rng.uniform(size=n) < scores).astype(int)


def test_the_targets_hold_on_the_true_risk_with_probability_one_minus_delta() -> None:
    # valid thresholds: block >= 0.9 (precision 0.95), allow <= 0.1 (miss rate 0.05)
    bands = [
        learn_then_test(*calibrated(3000, seed), Targets(allow_miss_rate=0.05))
        for seed in range(200)
    ]
    violated = np.mean([b.block < 0.9 or b.allow > 0.1 for b in bands])
    assert violated <= 0.1
    # and the band is useful: most ads are decided automatically
    assert np.median([b.block for b in bands]) < 0.99
    assert np.median([b.allow for b in bands]) > 0.01
    assert np.median([b.calibration["review_share"] for b in bands]) < 0.99


def test_the_thresholds_are_valid_on_a_large_independent_test_set() -> None:
    band = learn_then_test(*calibrated(5000, 1), Targets(0.9, 0.1))
    test = outcome(*calibrated(200_000, 2), band.allow, band.block)
    assert test["block_precision"] >= 0.9
    assert test["allow_miss_rate"] <= 0.1
    assert band.allow <= band.block
    decisions = band.decide(np.array([0.0, (band.allow + band.block) / 2, 1.0]))
    assert decisions.tolist() == ["allow", "review", "block"]


def test_too_few_ads_decide_nothing_automatically() -> None:
    band = learn_then_test(*calibrated(40, 3), Targets())
    assert (band.allow, band.block) == (float("-inf"), float("inf"))
    assert band.decide(np.array([0.0, 1.0])).tolist() == ["review", "review"]
    assert band.calibration["review_share"] == 1.0


@pytest.mark.parametrize("field", ["block_precision", "allow_miss_rate", "delta"])
@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_targets_outside_zero_one_are_refused(field: str, bad: float) -> None:
    changes: dict[str, Any] = {field: bad}
    with pytest.raises(TargetError, match=f"{field} must be in") as refused:
        Targets(**changes)
    assert refused.value.field == field


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=20_000)
    labels = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * z))
    calibration = fit_calibration(overconfident, labels, methods=("temperature",))
    assert calibration.method == "temperature"
    assert calibration.temperature == pytest.approx(3.0, rel=0.1)
    after = expected_calibration_error(calibration(overconfident), labels)
    assert after < expected_calibration_error(overconfident, labels) / 3
    order = np.argsort(overconfident)
    assert np.all(np.diff(calibration(overconfident)[order]) >= 0)  # ranking unchanged


def test_the_method_with_the_lower_held_out_ece_is_kept_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=20_000)
    # a step, not a logistic distortion: a temperature cannot fit it, isotonic can
    labels = (rng.uniform(size=scores.size) < np.where(scores < 0.5, 0.1, 0.6)).astype(int)
    calibration = fit_calibration(scores, labels)
    assert calibration.method == "isotonic"
    assert calibration.ece is not None
    assert calibration.ece["isotonic"] < min(
        calibration.ece["temperature"], calibration.ece["identity"]
    )
    again = Calibration.from_json(calibration.to_json())
    assert np.array_equal(again(scores), calibration(scores))


def test_calibrated_scores_keep_the_identity() -> None:
    scores, labels = calibrated(20_000, 4)
    calibration = fit_calibration(scores, labels)
    assert calibration.ece is not None
    assert calibration.ece["identity"] < 0.02
    assert np.abs(calibration(scores) - scores).mean() < 0.05


def one_noisy_label_at_each_end(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ad scored from 0.5 up violates and every one below does not, but for the single
    highest-scored ad (clean) and the single lowest-scored one (a violation)."""
    scores = np.linspace(0.0, 1.0, n)
    labels = (scores >= 0.5).astype(int)
    labels[0], labels[-1] = 1, 0
    return scores, labels


def test_one_noisy_label_at_the_extremes_does_not_end_the_sequence() -> None:
    scores, labels = one_noisy_label_at_each_end(2000)
    brittle = learn_then_test(scores, labels, Targets(start_errors=0))
    assert (brittle.allow, brittle.block) == (float("-inf"), float("inf"))
    band = learn_then_test(scores, labels, Targets())
    assert band.start_errors == 2
    assert 0.45 < band.allow <= band.block < 0.55
    assert band.calibration["block_precision"] >= 0.95
    assert band.calibration["allow_miss_rate"] <= 0.02
    assert band.calibration["review_share"] < 0.05


def test_a_negative_start_is_refused() -> None:
    with pytest.raises(TargetError, match="start_errors must be >= 0"):
        Targets(start_errors=-1)
