"""A small four-modality ensemble (tiny BERT, MobileNetV3, log-mel CNN, small R3D)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ensemble import ModelConfig, build_ensemble
from ensemble.model import AdPolicyEnsemble


def small_config_json(tiny_bert_dir: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "small",
        "version": "test",
        "encoders": {
            "text": {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16},
            "image": {"type": "mobilenet_v3_small", "image_size": 64},
            "audio": {"type": "logmel_cnn", "clip_seconds": 1.0, "channels": [8, 16]},
            "video": {"type": "r3d_18", "num_frames": 4, "frame_size": 32},
        },
        "policies": [
            {"name": "offensive_language", "heads": ["text"], "calibrated": True},
            {"name": "violence", "heads": ["text", "image", "video", "audio"], "calibrated": True},
            {"name": "adult", "heads": ["image", "video"], "calibrated": False},
        ],
        "limits": {"max_seconds": 10},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def small_config(tiny_bert_dir: Path) -> ModelConfig:
    return ModelConfig.from_json(small_config_json(tiny_bert_dir))


@pytest.fixture(scope="session")
def small_model(small_config: ModelConfig) -> AdPolicyEnsemble:
    return build_ensemble(small_config, seed=0)


@pytest.fixture(scope="session")
def sample_ads(sample_media: Path) -> dict[str, dict[str, Any]]:
    """Ads over the sample media, keyed by id (paths relative to examples/)."""
    return {
        "text-only": {"id": "text-only", "text": "Fresh coffee, delivered weekly."},
        "image-only": {"id": "image-only", "image": "media/sharp_banner.png"},
        "audio-only": {"id": "audio-only", "audio": "media/calm_voiceover.wav"},
        "all-four": {
            "id": "all-four",
            "text": "New running shoes.",
            "image": "media/sharp_banner.png",
            "audio": "media/calm_voiceover.wav",
            "video": "media/calm.mp4",
        },
    }
