"""The mixed-traffic benchmark compares like with like: padded and bucketed runs of real
generated ads (text, PNG, WAV, MP4) give the same scores and measurements."""

from __future__ import annotations

import json

import pytest

from benchmarks.mixed import knee, one_modality_at_a_time, padded_config, parity, sweep
from benchmarks.traffic_set import make
from ensemble import from_pretrained
from ensemble.scoring import DEFAULT_DIR


def test_the_padded_mode_is_the_behaviour_before_buckets() -> None:
    model = from_pretrained(DEFAULT_DIR)
    config, overrides = padded_config(model.config)
    assert list(config.encoders["text"].settings["buckets"]) == [128]
    assert overrides == {"video_flash": {"buckets": []}, "audio_loudness": {"buckets": []}}


def test_knee_is_the_best_batch_and_says_whether_throughput_fell_before_it() -> None:
    assert knee({1: 10.0, 4: 20.0, 8: 25.0, 16: 24.0}) == (8, True)
    assert knee({1: 10.0, 4: 8.0, 8: 25.0}) == (8, False)


def test_one_modality_a_pass_adds_up_the_seconds_of_each_modality_set() -> None:
    # 10 texts at 20/s (0.5 s) and 2 videos at 4/s (0.5 s) are 10 ads in 1 s at batch 1;
    # at batch 8, 10 / (10/40 + 2/5) = 10 / 0.65
    rates = {"padded": {1: 20.0, 8: 40.0}, "bucketed": {1: 20.0, 8: 40.0}}
    video = {"padded": {1: 4.0, 8: 5.0}, "bucketed": {1: 4.0, 8: 5.0}}
    results = {
        "mixed": {"n": 10, "rates": rates},
        "text": {"n": 10, "rates": rates},
        "video": {"n": 2, "rates": video},
    }
    apart = one_modality_at_a_time(results, 10)
    assert apart["bucketed"][1] == pytest.approx(10.0)
    assert apart["bucketed"][8] == pytest.approx(10 / 0.65)
    assert apart["padded"] == apart["bucketed"]


@pytest.mark.slow
def test_bucketed_and_padded_runs_score_the_same_real_ads(tmp_path) -> None:
    path = make(tmp_path, ads=16, pool_size=1, seed=3)
    ads = [json.loads(line) for line in path.read_text().splitlines()]
    assert any("audio" in ad for ad in ads)
    assert any("video" in ad for ad in ads)
    model = from_pretrained(DEFAULT_DIR)
    result = sweep(model, ads, tmp_path, [4], window=2)
    assert set(result["rates"]) == {"padded", "bucketed"}
    assert all(rate > 0 for rates in result["rates"].values() for rate in rates.values())
    same = parity(result["outs"], model)
    assert same["max_abs_score_diff"] <= 1e-4
    assert same["decisions_differing"] == 0
    assert same["max_abs_measurement_diff"] <= 1e-3
