"""The archive: one .mar holding the graph, manifest, tokenizer, handler, code and model-config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ensemble.cli import main
from export.artifact import ArtifactError, sha256_of
from serve.archive import (
    ModelSettings,
    build_archive,
    read_archive_manifest,
    read_archive_model,
    read_archive_settings,
)

from .conftest import SERVE_SETTINGS


def test_the_archive_holds_everything_the_handler_needs(
    small_mar: Path, serve_artifact: Path
) -> None:
    with zipfile.ZipFile(small_mar) as mar:
        names = set(mar.namelist())
        mar_manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        model_config = yaml.safe_load(mar.read("model-config.yaml"))
        graph = mar.read("artifact/model.pt")
    assert mar_manifest["model"] == {
        "modelName": "small",
        "handler": "handler.py",
        "modelVersion": "1.0",
        "configFile": "model-config.yaml",
    }
    assert model_config == SERVE_SETTINGS.to_model_config()
    expected = {
        "handler.py",
        "artifact/manifest.json",
        "artifact/encoders/text/vocab.txt",
        "artifact/encoders/text/tokenizer.json",
        "ensemble/batch.py",
        "ensemble/postprocess.py",
        "encoders/media.py",
        "export/artifact.py",
        "serve/handler.py",
        "serve/capture.py",
        "serve/payload.py",
    }
    assert expected <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    not_served = (
        "ensemble/training/",
        "ensemble/cli/",
        "ensemble/default/",
        "ensemble/distributed.py",
        "serve/monitor/",
    )
    assert not [n for n in names if n.startswith(not_served) or n.endswith("/commands.py")]
    manifest = read_archive_manifest(small_mar)
    assert manifest == json.loads((serve_artifact / "manifest.json").read_text())
    assert manifest["graph"]["sha256"] == sha256_of(serve_artifact / "model.pt")
    assert len(graph) == (serve_artifact / "model.pt").stat().st_size
    assert read_archive_model(small_mar) == ("small", "1.0")
    assert read_archive_settings(small_mar) == SERVE_SETTINGS


def test_an_existing_archive_is_only_replaced_on_request(
    serve_artifact: Path, tmp_path: Path
) -> None:
    first = build_archive(serve_artifact, tmp_path, version="1")
    with pytest.raises(FileExistsError, match="--force"):
        build_archive(serve_artifact, tmp_path, version="2")
    build_archive(serve_artifact, tmp_path, version="2", force=True)
    assert read_archive_model(first) == ("small", "2")


def test_a_modified_graph_is_not_archived(serve_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(serve_artifact, copy)
    (copy / "model.pt").write_bytes((copy / "model.pt").read_bytes()[:-1])
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        build_archive(copy, tmp_path / "store")
    assert not (tmp_path / "store" / "small.mar").exists()


def test_model_settings_defaults_and_checks() -> None:
    assert ModelSettings().to_model_config() == {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 32,
        "maxBatchDelay": 5,
        "responseTimeout": 120,
        "startupTimeout": 120,
        "preparation_threads": 2,
        "torch_threads": 1,
    }
    settings = ModelSettings(batch_size=32, capture={"path": "/x/c.jsonl", "max_bytes": 10})
    assert ModelSettings.from_model_config(settings.to_model_config()) == settings
    with pytest.raises(ValueError, match="batch_size"):
        ModelSettings(batch_size=0)
    with pytest.raises(ValueError, match="torch_threads"):
        ModelSettings(torch_threads=0)
    with pytest.raises(ValueError, match="capture needs a path"):
        ModelSettings(capture={"max_bytes": 10})
    env = {"ADPOLICY_CAPTURE": "/y/env.jsonl"}
    assert settings.with_capture_from(env).capture == {"path": "/y/env.jsonl", "max_bytes": 10}
    assert settings.with_capture_from({}) is settings


def test_cli_archive_writes_the_model_config(serve_artifact: Path, tmp_path: Path) -> None:
    code = main(
        [
            "archive",
            str(serve_artifact),
            "-o",
            str(tmp_path),
            "--model-name",
            "cli-model",
            "--batch-size",
            "32",
            "--max-batch-delay",
            "10",
            "--workers",
            "2",
            "--response-timeout",
            "30",
            "--startup-timeout",
            "60",
            "--torch-threads",
            "2",
            "--capture",
            str(tmp_path / "capture.jsonl"),
        ]
    )
    assert code == 0
    mar = tmp_path / "cli-model.mar"
    assert read_archive_model(mar) == ("cli-model", "serve-test")
    assert read_archive_settings(mar) == ModelSettings(
        batch_size=32,
        max_batch_delay_ms=10,
        workers=2,
        response_timeout_s=30,
        startup_timeout_s=60,
        torch_threads=2,
        capture={"path": str(tmp_path / "capture.jsonl")},
    )


def test_the_handler_imports_from_the_unpacked_archive_alone(small_mar: Path, tmp_path) -> None:
    with zipfile.ZipFile(small_mar) as mar:
        mar.extractall(tmp_path)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import handler, ensemble; "
        "assert ensemble.__file__.startswith(sys.argv[1]), ensemble.__file__; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ensemble', 'encoders', 'export', 'serve'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert {"ensemble.batch", "export.artifact", "serve.payload"} <= set(loaded)
    assert not [m for m in loaded if m.startswith(("ensemble.training", "ensemble.cli"))]
