"""ONE TorchServe archive (``.mar``) from an export artifact: graph, manifest, handler, code.

Layout of the archive (``torch-model-archiver`` writes ``MAR-INF/MANIFEST.json``)::

    handler.py          serve/handler.py, TorchServe's entry point
    model-config.yaml   batching, workers, timeouts and the handler's settings (ModelSettings)
    artifact/           the export artifact as it is: model.pt, manifest.json, encoders/KEY/
    ensemble/ encoders/ export/ serve/
                        the package code the handler imports, so that a TorchServe whose
                        Python holds the pinned stack (requirements.txt) but not this package
                        can serve the archive; without what serving never imports
                        (``NOT_SERVED``: training, the command line, the embedded default
                        weights, the monitoring jobs, the C++ runner)

The handler finds the artifact through ``ARTIFACT_DIR`` and verifies its checksum on load.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from export.artifact import MANIFEST_FILE, read_manifest, verify_graph

log = logging.getLogger(__name__)

ARTIFACT_DIR = "artifact"
MODEL_CONFIG_FILE = "model-config.yaml"
PACKAGES = ("ensemble", "encoders", "export", "serve")
# Copied from PACKAGES into no archive: the handler's imports never reach them (a test imports
# the handler from an unpacked archive alone). ``default`` is the embedded checkpoint: the
# archive's artifact holds its own graph.
NOT_SERVED = (
    "ensemble/training",
    "ensemble/cli",
    "ensemble/default",
    "ensemble/distributed.py",
    "export/cpp",
    "serve/monitor",
    "*/commands.py",
)
CAPTURE_ENV = "ADPOLICY_CAPTURE"  # a capture file path; overrides model-config ``capture``


@dataclass(frozen=True)
class ModelSettings:
    """What ``model-config.yaml`` holds: TorchServe's per-model keys and the handler's own.

    The defaults suit one CPU worker serving ads one at a time or in bursts; they come from
    ``python -m benchmarks.serve_load`` (``benchmarks/results/serve_load.md``; text ads, 1
    worker x 1 torch thread, 2 shared cores): ``batchSize`` 32 served 27 req/s at 32 clients
    against 23 for 8 and 13 for 1 (mean batch 16: the queue that builds while a batch runs
    fills the next one), with no cost to a lone client (p50 73 ms); ``maxBatchDelay`` 5 ms,
    because a longer wait only delays light traffic (one client: p50 91 ms at 20 ms, 119 ms at
    50 ms) while heavy traffic fills batches anyway. A batch of 32 long videos may outlast
    ``responseTimeout``: lower ``batchSize`` or raise the timeout for such traffic.

    Attributes:
        batch_size: ``batchSize``: most requests TorchServe hands the handler at once (the
            graph runs once per call, on all of them).
        max_batch_delay_ms: ``maxBatchDelay``: how long TorchServe waits to fill a batch.
        workers: ``minWorkers`` and ``maxWorkers``: worker processes, each with the graph.
        response_timeout_s: ``responseTimeout``: a batch taking longer restarts the worker.
        startup_timeout_s: ``startupTimeout``: loading the graph may take this long.
        preparation_threads: Threads decoding and preparing the ads of one batch.
        torch_threads: Intra-op threads of each worker's graph runs. 1 by default: OpenMP
            threads spin-wait for each other, and on 2 cores shared with other processes
            2 threads ran MiniLM 30 times slower than 1 at batch 1 and 2 times at batch 32;
            on dedicated cores try cores / workers.
        capture: ``{"path", "max_bytes", "backups"}`` for request capture
            (:class:`serve.capture.CaptureWriter`), or None: off.
    """

    batch_size: int = 32
    max_batch_delay_ms: int = 5
    workers: int = 1
    response_timeout_s: int = 120
    startup_timeout_s: int = 120
    preparation_threads: int = 2
    torch_threads: int = 1
    capture: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        positive = ("batch_size", "workers", "response_timeout_s", "startup_timeout_s")
        for name in (*positive, "preparation_threads", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {self.max_batch_delay_ms}")
        if self.capture is not None and not self.capture.get("path"):
            raise ValueError(f"capture needs a path, got {dict(self.capture)}")

    def to_model_config(self) -> dict[str, Any]:
        """The ``model-config.yaml`` mapping."""
        config: dict[str, Any] = {
            "minWorkers": self.workers,
            "maxWorkers": self.workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            "startupTimeout": self.startup_timeout_s,
            "preparation_threads": self.preparation_threads,
            "torch_threads": self.torch_threads,
        }
        if self.capture is not None:
            config["capture"] = dict(self.capture)
        return config

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> ModelSettings:
        """Read a parsed ``model-config.yaml`` (absent keys take the defaults)."""
        keys = {
            "batch_size": "batchSize",
            "max_batch_delay_ms": "maxBatchDelay",
            "workers": "maxWorkers",
            "response_timeout_s": "responseTimeout",
            "startup_timeout_s": "startupTimeout",
            "preparation_threads": "preparation_threads",
            "torch_threads": "torch_threads",
            "capture": "capture",
        }
        return cls(**{field: config[key] for field, key in keys.items() if key in config})

    def with_capture_from(self, environ: Mapping[str, str]) -> ModelSettings:
        """These settings, capturing to ``$ADPOLICY_CAPTURE`` when it is set (``adpolicy
        serve --capture`` sets it for the workers); other capture keys are kept."""
        path = environ.get(CAPTURE_ENV)
        if not path:
            return self
        return dataclasses.replace(self, capture={**(self.capture or {}), "path": path})


def package_dir(name: str) -> Path:
    """The directory of an importable package (works for editable and regular installs)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} not found")
    return Path(next(iter(spec.submodule_search_locations)))


def _not_served(package: str) -> Callable[[str, list[str]], set[str]]:
    """A ``copytree`` ignore function dropping ``NOT_SERVED`` paths and bytecode of a package."""
    root = package_dir(package)

    def ignore(directory: str, names: list[str]) -> set[str]:
        prefix = Path(package, Path(directory).relative_to(root))
        return {
            name
            for name in names
            if name == "__pycache__"
            or name.endswith(".pyc")
            or any(fnmatch.fnmatch(str(prefix / name), pattern) for pattern in NOT_SERVED)
        }

    return ignore


def build_archive(
    artifact_dir: str | Path,
    model_store: str | Path,
    settings: ModelSettings | None = None,
    *,
    model_name: str | None = None,
    version: str | None = None,
    force: bool = False,
) -> Path:
    """Build ``MODEL_STORE/<model_name>.mar`` from an export artifact.

    Args:
        artifact_dir: A directory written by ``adpolicy export`` (checked: manifest, checksum).
        model_store: Where the archive goes (created).
        settings: The model-config; defaults as documented on :class:`ModelSettings`.
        model_name: TorchServe's model name (default: the model config's ``name``).
        version: The archive's version (default: the model config's ``version``).
        force: Replace an existing archive of the same name.

    Returns:
        The archive's path.

    Raises:
        export.artifact.ArtifactError: Not an artifact, or its graph fails the checksum.
        FileExistsError: The archive exists and ``force`` is off.
        RuntimeError: ``torch-model-archiver`` failed (its output is in the message).
    """
    source = Path(artifact_dir).resolve()
    manifest = read_manifest(source)
    for graph in [manifest["graph"], *manifest.get("bucket_graphs", [])]:
        verify_graph(source, graph)
    name = model_name or manifest["config"]["name"]
    store = Path(model_store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{name}.mar"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True (--force) to replace it")
    with tempfile.TemporaryDirectory(prefix="adpolicy-archive-") as tmp:
        stage = Path(tmp) / "stage"
        shutil.copytree(source, stage / ARTIFACT_DIR)
        for package in PACKAGES:
            shutil.copytree(package_dir(package), stage / package, ignore=_not_served(package))
        config_file = Path(tmp) / MODEL_CONFIG_FILE
        model_config = (settings or ModelSettings()).to_model_config()
        config_file.write_text(yaml.safe_dump(model_config, sort_keys=False))
        command = [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            name,
            "--version",
            str(version or manifest["config"]["version"]),
            "--handler",
            str(stage / "serve" / "handler.py"),
            "--extra-files",
            str(stage),
            "--config-file",
            str(config_file),
            "--export-path",
            str(store),
            *(["--force"] if force else []),
        ]
        work = Path(tmp) / "work"  # the archiver stages under $TMPDIR/<model name>
        work.mkdir()
        done = subprocess.run(
            command, env={**os.environ, "TMPDIR": str(work)}, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed:\n{done.stdout}{done.stderr}")
    log.info("archive %s written (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def read_archive_manifest(mar: str | Path) -> dict[str, Any]:
    """The export manifest inside an archive (model config, limits, policies)."""
    with zipfile.ZipFile(mar) as archive:
        manifest: dict[str, Any] = json.loads(archive.read(f"{ARTIFACT_DIR}/{MANIFEST_FILE}"))
    return manifest


def read_archive_settings(mar: str | Path) -> ModelSettings:
    """The model-config inside an archive."""
    with zipfile.ZipFile(mar) as archive:
        config = yaml.safe_load(archive.read(MODEL_CONFIG_FILE)) or {}
    return ModelSettings.from_model_config(config)


def read_archive_model(mar: str | Path) -> tuple[str, str]:
    """TorchServe's model name and version of an archive (from ``MAR-INF/MANIFEST.json``)."""
    with zipfile.ZipFile(mar) as archive:
        model = json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]
    return str(model["modelName"]), str(model["modelVersion"])
