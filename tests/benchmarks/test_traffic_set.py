"""The traffic set: its mix, its text lengths and its media durations are what it promises."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from benchmarks.traffic_set import SECONDS, TEXT_PROFILES, make, token_length
from encoders.media import MediaLimits, decode_audio


@pytest.mark.parametrize("profile", sorted(TEXT_PROFILES))
def test_text_lengths_have_the_profile_quantiles(profile: str) -> None:
    rng = np.random.default_rng(0)
    lengths = [token_length(profile, rng) for _ in range(4000)]
    median, p90 = TEXT_PROFILES[profile]
    assert np.median(lengths) == pytest.approx(median, rel=0.05)
    assert np.percentile(lengths, 90) == pytest.approx(p90, rel=0.08)


def test_the_set_mixes_modalities_with_media_of_5_to_30_seconds(tmp_path) -> None:
    path = make(tmp_path, ads=300, pool_size=2, seed=1)
    ads = [json.loads(line) for line in path.read_text().splitlines()]
    share = {k: sum(k in ad for ad in ads) / len(ads) for k in ("image", "audio", "video")}
    assert share["image"] == pytest.approx(0.3, abs=0.08)
    assert share["audio"] == pytest.approx(0.3, abs=0.08)
    assert share["video"] == pytest.approx(0.1, abs=0.05)
    assert all("text" in ad or len(ad) > 1 for ad in ads)
    for name in {ad["audio"] for ad in ads if "audio" in ad}:
        clip = decode_audio((tmp_path / name).read_bytes(), MediaLimits())
        assert SECONDS[0] <= clip.samples.shape[1] / clip.sample_rate <= SECONDS[1] + 0.01
    for name in {ad["video"] for ad in ads if "video" in ad}:
        with av.open(str(tmp_path / name)) as container:
            stream = container.streams.video[0]
            assert stream.average_rate is not None
            seconds = stream.frames / float(stream.average_rate)
        assert SECONDS[0] - 0.05 <= seconds <= SECONDS[1] + 0.05
