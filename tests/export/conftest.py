"""Export fixtures: the small four-modality ensemble, saved as a checkpoint and exported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble import ModelConfig, build_ensemble, save_pretrained
from ensemble.model import AdPolicyEnsemble
from export.artifact import Artifact, load_artifact
from export.exporter import ExportOptions, export_model

from ..ensemble.conftest import small_config_json

SMALL_BATCHES = (1, 2, 7, 32)


@pytest.fixture(scope="session")
def small_export_model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    """Tiny BERT, MobileNetV3 at 64 px, a 2-block log-mel CNN, and MobileNetV3 pooled over
    2 frames of 32 px for video (R3D is swept by the operator check; here it would only make
    every batch-32 check slow)."""
    data = small_config_json(tiny_bert_dir)
    data["encoders"]["video"] = {
        "type": "frame_pool",
        "backbone": "mobilenet_v3_small",
        "num_frames": 2,
        "frame_size": 32,
    }
    return build_ensemble(ModelConfig.from_json(data), seed=0)


@pytest.fixture(scope="session")
def small_checkpoint(
    small_export_model: AdPolicyEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return save_pretrained(small_export_model, tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="session")
def small_artifact_dir(
    small_export_model: AdPolicyEnsemble, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    return export_model(small_export_model, out, ExportOptions(batch_sizes=SMALL_BATCHES))


@pytest.fixture(scope="session")
def small_artifact(small_artifact_dir: Path) -> Artifact:
    return load_artifact(small_artifact_dir)
