"""Rule heads: scores cross 0.5 exactly at each standard's boundary; the analyzers in the
ensemble, traced; the demo's sample ads flagged by the default configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from encoders import get_encoder, get_entry
from ensemble import ModelConfig, build_ensemble
from ensemble.config import load_config
from ensemble.scoring import Scorer
from export.opcheck import check_operators
from tests.tracing import trace_save_load

SMALL = {"flash": {"max_seconds": 1.0}, "loudness": {"max_seconds": 1.0}, "image_quality": {}}


def scores(analyzer: str, rows: list[dict[str, float]], rules: list[dict[str, Any]]) -> list:
    """The rule head's scores [rows, policies] for measurements given by name."""
    encoder = get_encoder(analyzer, **SMALL[analyzer])
    rule = get_entry(analyzer).rule
    assert rule is not None
    head = rule(encoder, list(range(len(rules))), rules)
    names = encoder.measurement_names
    features = torch.tensor([[row.get(n, 0.0) for n in names] for row in rows])
    return torch.sigmoid(head(features)).tolist()


def flagged(analyzer: str, rows: list[dict[str, float]], rule: dict[str, Any]) -> list[bool]:
    return [s[0] >= 0.5 for s in scores(analyzer, rows, [rule])]


def test_flash_rule_fails_more_than_three_flashes() -> None:
    rows = [
        {"max_flashes": 3.0},
        {"max_flashes": 3.5},
        {"max_red_flashes": 3.0},
        {"max_red_flashes": 3.5},
        {"max_flashes": 0.5, "extended_s": 4.5},
    ]
    assert flagged("flash", rows, {"max_flashes": 3}) == [False, True, False, True, False]
    assert flagged("flash", rows, {"max_flashes": 2.8}) == [True, True, True, True, False]
    with_extended = {"max_flashes": 3, "extended_seconds": 4}
    assert flagged("flash", rows, with_extended) == [False, True, False, True, True]
    (three,), (three_and_a_half,) = scores("flash", rows[:2], [{"max_flashes": 3}])
    assert three == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    assert three_and_a_half == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())


def test_loudness_rule_is_a_window_around_the_target() -> None:
    rows = [{"integrated_lufs": v} for v in (-24.0, -22.1, -21.9, -25.9, -26.1, -70.0, -5.0)]
    rule = {"target_lufs": -24, "tolerance_lu": 2}
    assert flagged("loudness", rows, rule) == [False, False, True, False, True, True, True]
    (at_boundary,) = scores("loudness", [{"integrated_lufs": -22.0}], [rule])
    assert at_boundary[0] == pytest.approx(0.5)
    assert flagged("loudness", rows[:3], {"target_lufs": -23, "tolerance_lu": 1}) == [
        True,
        False,
        True,
    ]


def test_quality_rule_flags_blur_or_a_short_side() -> None:
    rows = [
        {"laplacian_var": 150.0, "short_side": 400.0},
        {"laplacian_var": 150.0, "short_side": 399.0},
        {"laplacian_var": 99.0, "short_side": 1000.0},
        {"laplacian_var": 0.0, "short_side": 1000.0},
        {"laplacian_var": 150.0, "short_side": 250.0, "standard_size": 1.0},
        {"laplacian_var": 99.0, "short_side": 250.0, "standard_size": 1.0},
    ]
    rule = {"min_laplacian_var": 100, "min_short_side": 400}
    assert flagged("image_quality", rows, rule) == [False, True, True, True, False, True]
    size_only = {"min_laplacian_var": 0, "min_short_side": 400}
    assert flagged("image_quality", rows, size_only) == [False, True, False, False, False, False]


def test_one_analyzer_can_score_several_policies() -> None:
    rules = [{"target_lufs": -24, "tolerance_lu": 2}, {"target_lufs": -16, "tolerance_lu": 1}]
    out = scores("loudness", [{"integrated_lufs": -16.5}], rules)
    assert [s >= 0.5 for s in out[0]] == [True, False]


@pytest.mark.parametrize("analyzer", list(SMALL))
def test_unknown_rule_parameters_are_refused(analyzer) -> None:
    with pytest.raises(ValueError, match="accepted"):
        scores(analyzer, [{}], [{"no_such_parameter": 1}])


def analyzer_config() -> ModelConfig:
    return ModelConfig.from_json(
        {
            "name": "analyzers",
            "version": "test",
            "encoders": {
                "video_flash": {"type": "flash", "max_seconds": 2.0},
                "audio_loudness": {"type": "loudness", "max_seconds": 2.0},
                "image_quality": {"type": "image_quality", "analysis_size": 64},
            },
            "policies": [
                {"name": "flashing", "heads": ["video_flash"], "calibrated": True},
                {"name": "loudness", "heads": ["audio_loudness"], "calibrated": True},
                {"name": "low_quality_image", "heads": ["image_quality"], "calibrated": True},
            ],
        }
    )


def test_analyzers_trace_with_the_ensemble() -> None:
    model = build_ensemble(analyzer_config())
    assert model.measurement_names[:2] == [
        "audio_loudness.integrated_lufs",
        "audio_loudness.max_momentary_lufs",
    ]
    torch.manual_seed(0)
    with torch.no_grad():
        loaded = trace_save_load(model, model.example_inputs(2))
        for batch in (1, 3):
            presence = torch.ones(batch, 4, dtype=torch.bool)
            presence[0, 1] = False  # the first ad has no image
            inputs = model.example_inputs(batch, presence)
            eager = model(*inputs)
            for got, want in zip(loaded(*inputs), eager, strict=True):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            assert eager.modality_scores[0, 1].abs().sum() == 0
    # Every analyzer and rule head stays on AWS Neuron's Inf1 operator list.
    outside = check_operators(loaded, "neuron").by_location()
    mine = {k: v for k, v in outside.items() if k.split(".")[0] in ("encoders", "heads")}
    assert mine == {}


@pytest.mark.parametrize("name", ["default", "full"])
def test_configs_ship_the_three_standards(name) -> None:
    config = load_config(name)
    policies = {p.name: p for p in config.policies}
    for policy, analyzer in (
        ("flashing", "flash"),
        ("loudness", "loudness"),
        ("low_quality_image", "image_quality"),
    ):
        (key,) = policies[policy].heads
        assert config.encoders[key].type == analyzer
        assert policies[policy].calibrated
        assert policies[policy].threshold == 0.5
    assert policies["loudness"].rule == {"target_lufs": -24, "tolerance_lu": 2}


@pytest.mark.slow
def test_the_demo_flags_the_strobe_the_loud_track_and_the_blurry_image(sample_media: Path):
    """The sample ads scored by the default configuration (rule heads need no training)."""
    scorer = Scorer(build_ensemble(load_config("default")), batch_size=4)
    results = {
        r["id"]: r
        for r in scorer.score_file(sample_media.parent / "ads.jsonl", progress=False)
        if r["status"] == "ok"
    }
    expected = {
        "sharp-image": [],
        "blurry-image": ["low_quality_image"],
        "tiny-image": ["low_quality_image"],
        "calm-audio": [],
        "loud-audio": ["loudness"],
        "strobe-video": ["flashing"],
        "all-four": [],
    }
    for ad, flags in expected.items():
        assert results[ad]["flags"] == flags, ad
    strobe = results["strobe-video"]["measurements"]
    assert strobe["video_flash.max_flashes"] > 3
    assert results["loud-audio"]["measurements"]["audio_loudness.integrated_lufs"] > -22
    assert -26 < results["calm-audio"]["measurements"]["audio_loudness.integrated_lufs"] < -22
    assert results["blurry-image"]["measurements"]["image_quality.laplacian_var"] < 100
    assert set(results["all-four"]["measurements"]) >= {
        "video_flash.max_flashes",
        "audio_loudness.integrated_lufs",
        "image_quality.laplacian_var",
    }
    assert results["strobe-video"]["policies"]["loudness"]["status"] == "not_applicable"
