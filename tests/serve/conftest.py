"""Serving fixtures: a small four-modality model, its artifact and archive, test ads, and a
Python that has the pinned stack and TorchServe but NOT this package (the archive must carry
its own code)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from ensemble import ModelConfig, build_ensemble, samples
from ensemble.cli import main
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import DEFAULT_DIR, Scorer
from export.exporter import ExportOptions, export_checkpoint, export_model
from serve.archive import ModelSettings, build_archive
from serve.server import TorchServe, port_in_use

SERVE_LIMITS = {
    "max_seconds": 10,
    "max_image_bytes": 300_000,
    "max_audio_bytes": 1_000_000,
    "max_video_bytes": 1_000_000,
}
# Long enough that concurrent test requests share batches.
SERVE_SETTINGS = ModelSettings(batch_size=8, max_batch_delay_ms=300)


def serve_config_json(tiny_bert_dir: Path) -> dict[str, Any]:
    """Tiny BERT, MobileNetV3 at 64 px, a small log-mel CNN, MobileNetV3 frames pooled."""
    return {
        "name": "small",
        "version": "serve-test",
        "encoders": {
            "text": {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16},
            "image": {"type": "mobilenet_v3_small", "image_size": 64},
            "audio": {"type": "logmel_cnn", "clip_seconds": 1.0, "channels": [8, 16]},
            "video": {
                "type": "frame_pool",
                "backbone": "mobilenet_v3_small",
                "num_frames": 4,
                "frame_size": 32,
            },
        },
        "policies": [
            {"name": "offensive_language", "heads": ["text"], "calibrated": True},
            {"name": "violence", "heads": ["text", "image", "video", "audio"], "calibrated": True},
            {"name": "adult", "heads": ["image", "video"], "calibrated": False},
        ],
        "limits": SERVE_LIMITS,
    }


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


@pytest.fixture(scope="session")
def serve_model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    return build_ensemble(ModelConfig.from_json(serve_config_json(tiny_bert_dir)), seed=0)


@pytest.fixture(scope="session")
def offline(serve_model: AdPolicyEnsemble) -> Scorer:
    """Offline scoring with the eager model the artifact was traced from."""
    return Scorer(serve_model, batch_size=4)


@pytest.fixture(scope="session")
def serve_artifact(serve_model: AdPolicyEnsemble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve-artifact")
    return export_model(serve_model, out, ExportOptions(batch_sizes=(1, 3)))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-store")


@pytest.fixture(scope="session")
def small_mar(serve_artifact: Path, model_store: Path) -> Path:
    return build_archive(serve_artifact, model_store, SERVE_SETTINGS, version="1.0")


@pytest.fixture(scope="session")
def media(sample_media: Path) -> dict[str, bytes]:
    """Encoded media within the serve model's limits, plus broken and oversized ones."""
    images = {
        f"image{seed}": samples.png_bytes(samples.banner(160 + 40 * seed, 120, seed=seed))
        for seed in range(3)
    }
    return {
        **images,
        "audio": samples.wav_bytes(samples.tone(1.5, rate=16_000, freqs=(330.0,)), 16_000),
        "video": (sample_media / "strobe.mp4").read_bytes(),
        "corrupt": (sample_media / "corrupt.png").read_bytes(),
        "oversized": bytes(range(256)) * (SERVE_LIMITS["max_image_bytes"] // 256 + 8),
    }


@pytest.fixture(scope="session")
def good_ads(media: dict[str, bytes]) -> list[dict[str, Any]]:
    """Twelve valid ads over every combination of modalities that matters."""
    texts = ["Fresh coffee, delivered weekly.", "you idiot", "Big summer sale on shoes!"]
    ads: list[dict[str, Any]] = []
    for i in range(12):
        ad: dict[str, Any] = {"id": f"good-{i}"}
        if i % 4 != 3:
            ad["text"] = texts[i % 3]
        if i % 2 == 0:
            ad["image"] = b64(media[f"image{i % 3}"])
        if i % 3 == 0:
            ad["audio"] = b64(media["audio"])
        if i % 4 == 3:
            ad["video"] = b64(media["video"])
        ads.append(ad)
    return ads


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv that sees this environment's site-packages through a plain path entry: torch,
    TorchServe and the rest of the stack import, but the editable install of this package
    (a ``.pth`` hook in that site-packages) is not run, so ``import ensemble`` fails."""
    root = tmp_path_factory.mktemp("bare-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(python)


@pytest.fixture(scope="session")
def default_mar(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default model, exported and archived as a user would."""
    artifact = export_checkpoint(
        DEFAULT_DIR, tmp_path_factory.mktemp("default-artifact"), ExportOptions(batch_sizes=(1, 2))
    )
    return build_archive(artifact, model_store)


@pytest.fixture(scope="session")
def capture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture") / "ads.jsonl"


@pytest.fixture(scope="session")
def served(
    small_mar: Path,
    default_mar: Path,
    bare_python: str,
    capture_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TorchServe]:
    """ONE TorchServe for the session, started and stopped by the CLI as a user would: the
    small and the default archives on free 127.0.0.1 ports, token auth on, model API off,
    capture on, workers on the bare Python."""
    run_dir = tmp_path_factory.mktemp("ts")
    start = ["serve", str(small_mar), str(default_mar), "--port", "0", "--run-dir", str(run_dir)]
    with redirect_stdout(io.StringIO()):
        code = main([*start, "--python", bare_python, "--capture", str(capture_file)])
    server = TorchServe.find(run_dir)
    assert code == 0
    assert server is not None
    yield server
    with redirect_stdout(io.StringIO()):
        assert main(["serve", "--stop", "--run-dir", str(run_dir)]) == 0
    assert not server.alive()
    assert not any(port_in_use(port) for port in vars(server.ports).values())
    assert TorchServe.find(run_dir) is None
