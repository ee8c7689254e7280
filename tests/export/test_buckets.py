"""One graph per length bucket: exported, listed and checksummed in the manifest, routed by
input length when loaded, scoring as the one free-length graph does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble import ModelConfig, build_ensemble
from ensemble.batch import AdPreparer
from ensemble.config import load_config
from ensemble.model import AdPolicyEnsemble
from ensemble.rows import AdError
from export.artifact import ArtifactError, fixed_lengths, load_artifact
from export.buckets import BucketGraphs, bucket_file, bucket_lengths
from export.exporter import ExportOptions, export_model
from tests.wavfile import wav_bytes

from ..ensemble.conftest import small_config_json

TEXTS = [
    "coffee",
    "summer sale on every pair of running shoes this weekend only",
    " ".join(["fresh bread from the family bakery"] * 6),
]


@pytest.fixture(scope="module")
def text_model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    text = {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16}
    config = {
        "name": "buckets",
        "version": "test",
        "encoders": {"text": {**text, "buckets": [8]}},
        "policies": [{"name": "offensive_language", "heads": ["text"], "calibrated": True}],
    }
    return build_ensemble(ModelConfig.from_json(config), seed=0)


def test_bucket_combinations_share_a_length_per_encoder() -> None:
    buckets = {"text.input_ids": (16, 32), "text.attention_mask": (16, 32), "audio.wave": (5, 10)}
    combos = bucket_lengths(buckets)
    assert len(combos) == 4
    assert combos[-1] == {"text.input_ids": 32, "text.attention_mask": 32, "audio.wave": 10}
    assert all(c["text.input_ids"] == c["text.attention_mask"] for c in combos)
    assert bucket_file(combos[0], ".pt") == "model.audio-5.text-16.pt"
    assert bucket_lengths({}) == [{}]


def test_graph_per_bucket_artifact_routes_by_length(
    text_model: AdPolicyEnsemble, tmp_path: Path
) -> None:
    options = ExportOptions(graph_per_bucket=True, batch_sizes=(1, 3))
    bucketed = export_model(text_model, tmp_path / "per-bucket", options)
    manifest = json.loads((bucketed / "manifest.json").read_text())
    files = [(g["lengths"]["text.input_ids"], g["file"]) for g in manifest["bucket_graphs"]]
    assert files == [(8, "model.text-8.pt"), (16, "model.pt")]
    assert manifest["parity"]["passed"]
    assert {c["inputs"] for c in manifest["parity"]["checks"]} >= {"random", "shortest-bucket"}

    artifact = load_artifact(bucketed)
    assert isinstance(artifact.graph, BucketGraphs)
    free = load_artifact(
        export_model(text_model, tmp_path / "free", ExportOptions(batch_sizes=(1,)))
    )
    ads = [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)]
    routed = artifact.scorer(allow_paths=False).score(ads)
    single = free.scorer(allow_paths=False).score(ads)
    for got, want in zip(routed, single, strict=True):
        score = want["policies"]["offensive_language"]["score"]
        assert got["policies"]["offensive_language"]["score"] == pytest.approx(score, abs=1e-5)

    ids = torch.ones(2, 12, dtype=torch.int64)  # 12: not a bucket
    inputs = [ids, torch.ones_like(ids), torch.tensor([1, 2])]
    with pytest.raises(ValueError, match=r"no graph for input lengths \{'text.attention_mask': 12"):
        artifact(*inputs)


def test_a_modified_bucket_graph_is_refused(text_model: AdPolicyEnsemble, tmp_path: Path) -> None:
    out = export_model(
        text_model, tmp_path / "a", ExportOptions(graph_per_bucket=True, batch_sizes=(1,))
    )
    with (out / "model.text-8.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match=r"model\.text-8\.pt: checksum mismatch"):
        load_artifact(out)


def test_torch_export_keeps_lengths_free_so_refuses_per_bucket() -> None:
    with pytest.raises(ValueError, match="keeps its lengths free"):
        _ = ExportOptions(target="torch-export", graph_per_bucket=True).per_bucket


def test_torch_export_pads_audio_to_its_clip_and_keeps_text_bucketed(tiny_bert_dir: Path) -> None:
    data = small_config_json(tiny_bert_dir)
    data["encoders"]["audio"]["clip_seconds"] = 10.0  # buckets 5 and 10 s
    config = ModelConfig.from_json(data)
    assert fixed_lengths(config, "torchscript") == {}
    overrides = fixed_lengths(config, "torch-export")
    assert overrides == {"audio": {"buckets": []}}
    assert AdPreparer(config).buckets["audio.waveform"] == (80_000, 160_000)
    fixed = AdPreparer(config, overrides=overrides).buckets
    assert fixed["audio.waveform"] == (160_000,)
    assert fixed["text.input_ids"] == AdPreparer(config).buckets["text.input_ids"]


def test_analyzers_traced_at_one_length_are_padded_in_a_single_graph() -> None:
    """The flash and loudness analyzers size their scans from the length: one graph pads them
    to their longest input, one graph per bucket keeps their buckets."""
    config = load_config("default")
    single = fixed_lengths(config, "torchscript")
    assert single == {"video_flash": {"buckets": []}, "audio_loudness": {"buckets": []}}
    assert fixed_lengths(config, "torchscript", per_bucket=True) == {}
    # Neuron compiles the channel dimension too: mono and stereo only (wider audio refused)
    assert fixed_lengths(config, "neuron", per_bucket=True) == {
        "audio_loudness": {"channel_buckets": [2]}
    }
    assert fixed_lengths(config, "neuronx") == {
        "video_flash": {"buckets": []},
        "audio_loudness": {"channel_buckets": [2], "buckets": []},
    }
    neuron = AdPreparer(config, overrides=fixed_lengths(config, "neuron", per_bucket=True))
    five_one = {"id": "5.1", "audio": wav_bytes(np.zeros((4800, 6)), 48_000)}
    with pytest.raises(AdError, match="6 channels: loudness analysis measures up to 2 here"):
        neuron.prepare(five_one)
    assert AdPreparer(config).prepare(five_one).tensors["audio_loudness.weights"].shape == (8,)
    buckets = AdPreparer(config).buckets
    assert buckets["video_flash.grid"] == (300, 600, 1200, 1800, 3600)  # frames at 60 fps
    assert buckets["audio_loudness.waveform"][-1] == 60 * 48_000
    padded = AdPreparer(config, overrides=single).buckets
    assert padded["video_flash.grid"] == (3600,)
    assert padded["audio_loudness.waveform"] == (60 * 48_000,)
