"""The artifact format the serving side builds on: manifest, checksum, relocatable preparation."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from encoders import MODALITIES
from ensemble.cli import main
from ensemble.pretrained import from_pretrained
from ensemble.scoring import DEFAULT_DIR
from export.artifact import (
    ANALYZER_ROWS,
    FORMAT_VERSION,
    MANIFEST_FILE,
    ArtifactError,
    load_artifact,
    read_manifest,
    sha256_of,
)


def test_manifest_describes_the_graph(small_artifact_dir, small_export_model) -> None:
    manifest = json.loads((small_artifact_dir / MANIFEST_FILE).read_text())
    assert manifest["format"] == "adpolicy-artifact"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["target"] == "torchscript"
    assert manifest["layout"] == "packed"
    assert manifest["graph"]["sha256"] == sha256_of(small_artifact_dir / "model.pt")
    assert [s["name"] for s in manifest["inputs"]] == small_export_model.input_names
    for spec in manifest["inputs"]:
        modality = spec["name"].split(".")[0] if spec["name"].startswith("index.") else None
        assert spec["shape"][0] == ("batch" if modality else f"rows_{spec['name'].split('.')[0]}")
    assert manifest["inputs"][-len(MODALITIES) :] == [
        {"name": f"index.{m}", "shape": ["batch"], "dtype": "torch.int64"} for m in MODALITIES
    ]
    ids = next(s for s in manifest["inputs"] if s["name"] == "text.input_ids")
    assert ids == {
        "name": "text.input_ids",
        "shape": ["rows_text", 16],
        "dtype": "torch.int64",
        "buckets": [16],
    }
    assert [o["name"] for o in manifest["outputs"]] == [
        "scores",
        "modality_scores",
        "measurements",
    ]
    assert manifest["outputs"][0]["shape"] == ["batch", 3]
    assert manifest["policies"] == ["offensive_language", "violence", "adult"]
    assert manifest["config"]["policies"][2] == {
        **manifest["config"]["policies"][2],
        "name": "adult",
        "calibrated": False,
        "threshold": 0.5,
    }
    assert manifest["measurement_names"] == small_export_model.measurement_names
    assert manifest["preparation"]["audio"]["settings"]["sample_rate"] == 16_000
    assert manifest["preparation"]["text"]["settings"]["model_dir"] == "encoders/text"
    assert set(manifest["versions"]) >= {"adpolicy", "torch", "transformers"}
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["precision"]["dtype"] == "fp32"
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    assert "baseline" in manifest
    assert manifest["baseline"] is None
    assert manifest["neuron_check"]["target"] == "neuron"
    assert manifest["neuron_check"]["unsupported"] == {}  # every encoder reformulated


def test_loaded_graph_matches_eager(small_artifact, small_export_model) -> None:
    assert isinstance(small_artifact.graph, torch.jit.ScriptModule)
    assert not small_artifact.graph.training
    assert small_artifact.target == "torchscript"
    assert small_artifact.input_names == small_export_model.input_names
    inputs = small_export_model.example_inputs(5)
    with torch.no_grad():
        want = small_export_model(*inputs)
        got = small_artifact.graph(*inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_relocated_artifact_prepares_from_its_own_files(
    small_artifact_dir, small_export_model, tmp_path
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(small_artifact_dir, moved)
    artifact = load_artifact(moved)
    model_dir = artifact.config.encoders["text"].settings["model_dir"]
    assert model_dir == str(moved / "encoders" / "text")
    assert (moved / "encoders" / "text" / "tokenizer.json").is_file()
    assert not (moved / "encoders" / "text" / "model.safetensors").exists()
    preparer = artifact.preparer(allow_paths=False)
    assert preparer.allow_paths is False
    batch = preparer.collate([preparer.prepare({"id": "a", "text": "Buy two, get one free"})])
    with torch.no_grad():
        got = artifact.graph(*batch.inputs)
        want = small_export_model(*batch.inputs)
    torch.testing.assert_close(got[0], want.scores, atol=1e-4, rtol=0)
    scorer = artifact.scorer(allow_paths=False)
    assert scorer.analyzer_rows == ANALYZER_ROWS  # a traced analyzer's batch is cut for it
    assert artifact.scorer(allow_paths=False, analyzer_rows=None).analyzer_rows is None
    rows = scorer.score([{"id": "a", "text": "Buy two, get one free"}])
    assert rows[0]["policies"]["adult"]["status"] == "not_applicable"
    assert rows[0]["policies"]["offensive_language"]["status"] == "scored"
    assert artifact.measurement_names == small_export_model.measurement_names


def test_a_modified_graph_is_refused(small_artifact_dir, tmp_path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(small_artifact_dir, copy)
    data = bytearray((copy / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(copy)


def test_not_an_artifact_and_newer_formats_are_refused(small_artifact_dir, tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not an export artifact"):
        load_artifact(tmp_path)
    newer = tmp_path / "newer"
    shutil.copytree(small_artifact_dir, newer)
    manifest = read_manifest(newer)
    manifest["format_version"] = FORMAT_VERSION + 1
    (newer / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer than this code"):
        load_artifact(newer)
    (newer / "model.pt").unlink()
    manifest["format_version"] = FORMAT_VERSION
    (newer / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="incomplete"):
        load_artifact(newer)


def test_cli_exports_a_checkpoint(small_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "artifact"
    code = main(["export", str(small_checkpoint), "-o", str(out), "--batch-sizes", "1,3"])
    assert code == 0
    assert "parity max abs diff" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["parity"]["batch_sizes"] == [1, 3]
    assert manifest["source"]["checkpoint"] == str(small_checkpoint)


def test_cli_needs_an_output_or_a_check() -> None:
    with pytest.raises(SystemExit, match="give -o"):
        main(["export"])


@pytest.mark.slow
def test_default_model_artifact_scores_like_the_scorer(tmp_path) -> None:
    """The embedded default model, exported by the CLI, scores ads as offline scoring does."""
    out = tmp_path / "default"
    assert main(["export", "-o", str(out), "--batch-sizes", "1,7"]) == 0  # 1,2,7,32 by default
    artifact = load_artifact(out)
    assert artifact.manifest["parity"]["max_abs_diff"] <= 1e-4
    assert artifact.manifest["parity"]["batch_sizes"] == [1, 7]
    assert artifact.manifest["neuron_check"]["unsupported"] == {}
    ads = [{"id": "a", "text": "Fresh coffee, delivered weekly."}, {"id": "b", "text": "you idiot"}]
    model = from_pretrained(DEFAULT_DIR)
    preparer = artifact.preparer(allow_paths=False)
    batch = preparer.collate([preparer.prepare(ad) for ad in ads])
    with torch.no_grad():
        got = artifact.graph(*batch.inputs)
        want = model(*batch.inputs)
    torch.testing.assert_close(got[0], want.scores, atol=1e-4, rtol=0)


def _edited(small_artifact_dir, tmp_path, edit) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(small_artifact_dir, copy)
    manifest = read_manifest(copy)
    edit(manifest)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    return copy


def test_a_manifest_whose_policies_disagree_with_its_config_is_refused(
    small_artifact_dir, tmp_path
) -> None:
    def swap(manifest) -> None:
        manifest["policies"] = list(reversed(manifest["policies"]))

    with pytest.raises(ArtifactError, match="inconsistent manifest: the manifest lists"):
        load_artifact(_edited(small_artifact_dir, tmp_path, swap))


def test_a_config_with_a_policy_less_than_the_graph_is_refused(
    small_artifact_dir, tmp_path
) -> None:
    def drop(manifest) -> None:
        manifest["config"]["policies"] = manifest["config"]["policies"][:-1]
        manifest["policies"] = manifest["policies"][:-1]

    with pytest.raises(ArtifactError, match=r"output scores is 3 wide, expected 2"):
        load_artifact(_edited(small_artifact_dir, tmp_path, drop))


def test_the_graph_output_width_is_checked_when_it_runs(small_artifact) -> None:
    config = small_artifact.config
    fewer = dataclasses.replace(config, policies=config.policies[:-1])
    wrong = dataclasses.replace(small_artifact, config=fewer)
    preparer = small_artifact.preparer(allow_paths=False)
    inputs = preparer.collate([preparer.prepare({"id": "a", "text": "hi"})]).to("cpu")
    assert small_artifact(*inputs)[0].shape == (1, len(config.policies))
    with pytest.raises(ArtifactError, match="the graph scores 3 policies, the manifest lists 2"):
        wrong(*inputs)
