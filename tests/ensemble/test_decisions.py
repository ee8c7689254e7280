"""Calibrations and bands as stored in a config, and the rows the formatter builds from them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ensemble.config import ModelConfig
from ensemble.decisions import Band, Calibration, ad_decision
from ensemble.postprocess import ResultFormatter, flatten
from ensemble.writers import flat_columns

from .conftest import small_config_json

ISOTONIC = Calibration("isotonic", knots_x=(0.1, 0.5, 0.9), knots_y=(0.0, 0.2, 1.0))
BAND = Band(0.3, 0.8, "learn_then_test", {"block_precision": 0.95, "allow_miss_rate": 0.02})


def config_with(tiny_bert_dir: Path, **offensive: Any) -> ModelConfig:
    data = small_config_json(tiny_bert_dir)
    data["policies"][0].update(threshold=0.6, **offensive)
    return ModelConfig.from_json(data)


def test_calibration_and_band_round_trip_the_config_json(tiny_bert_dir: Path) -> None:
    never_allow = Band(-math.inf, 0.8, "learn_then_test", {"delta": 0.1})
    config = config_with(tiny_bert_dir, calibration=ISOTONIC.to_json(), band=never_allow.to_json())
    stored = config.to_json()
    assert stored["policies"][0]["band"]["allow"] is None  # strict JSON: no -Infinity
    again = ModelConfig.from_json(stored)
    policy = again.policies[0]
    assert policy.band == never_allow
    assert policy.calibration is not None
    assert policy.calibration.knots_y == ISOTONIC.knots_y
    scores = np.linspace(0, 1, 11)
    assert np.array_equal(policy.calibrate(scores), ISOTONIC(scores))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("band", {"allow": 0.9, "block": 0.2, "method": "margin"}, "must not exceed"),
        ("band", {"allow": 0.1, "block": 0.2, "method": "guess"}, "unknown method"),
        (
            "calibration",
            {"method": "isotonic", "knots_x": [0.5, 0.1], "knots_y": [0, 1]},
            "increase",
        ),
        ("calibration", {"method": "temperature", "temperature": -1}, "positive"),
    ],
)
def test_a_bad_stored_decision_is_refused_naming_the_policy(
    tiny_bert_dir: Path, field: str, value: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=f"policy 'offensive_language': .*{problem}"):
        config_with(tiny_bert_dir, **{field: value})


def test_the_ads_decision_is_the_strictest_of_its_scored_policies() -> None:
    assert ad_decision(["allow", None, "review", "allow"]) == "review"
    assert ad_decision(["review", "block", "allow"]) == "block"
    assert ad_decision(["allow", None]) == "allow"
    assert ad_decision([None, None]) == "review"  # nothing could judge it


def test_a_row_decides_on_the_raw_score_it_shows(tiny_bert_dir: Path) -> None:
    """Rows round scores to 6 decimals; a raw score within 5e-7 under a band edge showed the
    edge and the lower decision, so a reader recomputing it from the row disagreed."""
    config = config_with(tiny_bert_dir, calibration=ISOTONIC.to_json(), band=BAND.to_json())
    formatter = ResultFormatter(config, [])
    raw = torch.tensor([[0.8 - 4e-7, 0.5 - 4e-7, 0.5]], dtype=torch.float64)
    presence = torch.tensor([[1, 0, 0, 0]])
    [row] = formatter.format_batch(["a"], raw, torch.zeros(1, 4, 3), torch.zeros(1, 0), presence)
    offensive, violence = row["policies"]["offensive_language"], row["policies"]["violence"]
    assert offensive["raw_score"] == 0.8
    assert offensive["decision"] == BAND.decide(offensive["raw_score"]) == "block"
    assert (violence["score"], violence["flag"], violence["decision"]) == (0.5, True, "block")


def test_rows_report_calibrated_scores_and_decide_on_the_raw_ones(tiny_bert_dir: Path) -> None:
    config = config_with(tiny_bert_dir, calibration=ISOTONIC.to_json(), band=BAND.to_json())
    formatter = ResultFormatter(config, [])
    raw = torch.tensor([[0.2, 0.4, 0.5], [0.5, 0.9, 0.5], [0.85, 0.1, 0.5]])
    presence = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    breakdown = torch.zeros(3, 4, 3)
    breakdown[:, 0] = raw
    rows = formatter.format_batch(["a", "b", "c"], raw, breakdown, torch.zeros(3, 0), presence)
    offensive = [r["policies"]["offensive_language"] for r in rows]
    assert [e["raw_score"] for e in offensive] == pytest.approx([0.2, 0.5, 0.85])
    assert [e["score"] for e in offensive] == pytest.approx(ISOTONIC(np.array([0.2, 0.5, 0.85])))
    assert [r["modalities"]["text"]["offensive_language"] for r in rows] == pytest.approx(
        [e["score"] for e in offensive]
    )
    # the band on the raw score (allow < 0.3 <= review < 0.8 <= block); the flag at 0.6
    assert [e["decision"] for e in offensive] == ["allow", "review", "block"]
    assert [e["flag"] for e in offensive] == [False, False, True]
    # violence has no band: its threshold (0.5) decides, flagged = block
    violence = [r["policies"]["violence"] for r in rows]
    assert [e["decision"] for e in violence] == ["allow", "block", "allow"]
    assert "raw_score" not in violence[0]
    assert [r["policies"]["adult"]["decision"] for r in rows] == [None] * 3  # untrained
    assert [r["decision"] for r in rows] == ["allow", "block", "block"]
    decisions = rows[0]["model"]["decisions"]
    assert decisions["offensive_language"] == {
        "method": "learn_then_test", "block_precision": 0.95, "allow_miss_rate": 0.02,
    }  # fmt: skip
    assert decisions["violence"] == {"method": "threshold"}
    flat = flatten(rows[1])
    assert flat["decision"] == "block"
    assert flat["offensive_language.decision"] == "review"
    assert set(flat) <= set(flat_columns(config.policy_names, []))
