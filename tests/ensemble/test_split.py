"""One modality's part of an ensemble scores that modality's ads as the whole ensemble does."""

from __future__ import annotations

import pytest

from encoders import MODALITIES
from ensemble.builder import modality_config, modality_ensemble
from ensemble.scoring import Scorer


def test_modality_config_keeps_its_encoders_and_their_policies(small_config) -> None:
    text = modality_config(small_config, "text")
    assert list(text.encoders) == ["text"]
    assert text.policy_names == ["offensive_language", "violence"]
    assert all(p.heads == ("text",) for p in text.policies)
    image = modality_config(small_config, "image")
    assert image.policy_names == ["violence", "adult"]
    with pytest.raises(ValueError, match="reads"):
        modality_config(modality_config(small_config, "audio"), "video")


def test_parts_score_like_the_whole(small_model, sample_ads, sample_media) -> None:
    whole = Scorer(small_model)
    for modality in MODALITIES:
        ad = {"id": modality, modality: sample_ads["all-four"][modality]}
        part = Scorer(modality_ensemble(small_model, modality))
        (expected,) = whole.score([ad], base_dir=sample_media.parent)
        (got,) = part.score([ad], base_dir=sample_media.parent)
        assert set(got["policies"]) < set(expected["policies"])
        for name, entry in got["policies"].items():
            assert entry["status"] == expected["policies"][name]["status"]
            assert entry["score"] == pytest.approx(expected["policies"][name]["score"], abs=1e-6)
        assert got["modalities"] == expected["modalities"]
