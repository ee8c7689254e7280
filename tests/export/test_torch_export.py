"""The torch.export / AOTInductor target: one .pt2 package, free batch dimension, parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ensemble import ModelConfig, build_ensemble
from ensemble.model import AdPolicyEnsemble
from export.artifact import ArtifactError, load_artifact
from export.exporter import ExportOptions, export_model
from export.torch_export import export_program

from ..ensemble.conftest import small_config_json


@pytest.fixture(scope="module")
def text_audio_model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    """Tiny BERT and a small log-mel CNN: quick to compile with AOTInductor."""
    data = small_config_json(tiny_bert_dir)
    data["encoders"] = {k: data["encoders"][k] for k in ("text", "audio")}
    data["encoders"]["text"]["buckets"] = [8, 16]
    data["policies"] = [
        {"name": "offensive_language", "heads": ["text"], "calibrated": True},
        {"name": "violence", "heads": ["text", "audio"], "calibrated": True},
    ]
    return build_ensemble(ModelConfig.from_json(data))


def test_program_keeps_the_batch_dimension_free(text_audio_model) -> None:
    program = export_program(text_audio_model, text_audio_model.example_inputs(2))
    module = program.module()
    for size in (1, 5):
        inputs = text_audio_model.example_inputs(size)
        with torch.no_grad():
            got = module(*inputs)
            want = text_audio_model(*inputs)
        assert got[0].shape == (size, 2)
        torch.testing.assert_close(got[0], want.scores, atol=1e-5, rtol=0)


def test_program_keeps_the_bucketed_text_length_free(text_audio_model) -> None:
    names = text_audio_model.input_names
    text = [names.index("text.input_ids"), names.index("text.attention_mask")]
    lengths = [(position, "text_length", 16) for position in text]
    program = export_program(text_audio_model, text_audio_model.example_inputs(2), lengths)
    module = program.module()
    for length in (8, 16):
        example = text_audio_model.example_inputs(3)
        inputs = [t[:, :length] if i in text else t for i, t in enumerate(example)]
        with torch.no_grad():
            got = module(*inputs)
            want = text_audio_model(*inputs)
        torch.testing.assert_close(got[0], want.scores, atol=1e-5, rtol=0)


def test_aot_package_artifact_matches_eager(text_audio_model, tmp_path) -> None:
    out = export_model(
        text_audio_model, tmp_path, ExportOptions(target="torch-export", batch_sizes=(1, 7))
    )
    assert (out / "model.pt2").is_file()
    assert not (out / "model.pt").exists()
    artifact = load_artifact(out)
    assert artifact.manifest["target"] == "torch-export"
    assert artifact.manifest["graph"]["file"] == "model.pt2"
    assert artifact.manifest["parity"]["max_abs_diff"] <= 1e-4
    inputs = text_audio_model.example_inputs(3)
    with torch.no_grad():
        got = artifact(*inputs)
        want = text_audio_model(*inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with pytest.raises(ArtifactError, match="CPU only"):
        load_artifact(out, device="cuda")
