"""The export artifact: ONE graph file, its manifest, and the files its preparation reads.

Layout of an artifact directory::

    model.pt            the traced graph (TorchScript; a Neuron-compiled TorchScript module for
                        the neuron / neuronx targets); ``model.pt2`` for the torch-export target
    model.text-16.pt    ... one graph per other length bucket, where the target fixes every
                        shape (Neuron; ``--graph-per-bucket``): ``model.pt`` is the longest
    manifest.json       everything a server needs besides the graph (see :func:`build_manifest`)
    encoders/KEY/       Hugging Face config and tokenizer files of text encoders, referenced
                        by relative ``model_dir`` settings in the embedded config

The TorchServe handler knows the model only through :func:`load_artifact`: the graph, the
config (policies, thresholds, preparation settings), the measurement names and the input spec.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from encoders.base import MODALITIES, Encoder
from encoders.registry import get_entry
from ensemble.batch import AdPreparer
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import bundle_encoder_files, resolve_encoder_paths
from ensemble.rows import model_info
from ensemble.scoring import Scorer
from export.buckets import BucketGraphs, Lengths, bucket_file
from export.runtime import graph_mode

log = logging.getLogger(__name__)

FORMAT_NAME = "adpolicy-artifact"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
GRAPH_FILES = {
    "torchscript": "model.pt",
    "neuron": "model.pt",
    "neuronx": "model.pt",
    "torch-export": "model.pt2",
}
OUTPUT_NAMES = ("scores", "modality_scores", "measurements")
# How a target's batches are laid out (see AdPolicyEnsemble): TorchScript runs packed batches
# (an encoder sees only the ads with its modality); torch.export and Neuron compile fixed
# shapes, so every ad gets a row in every modality (placeholders where absent).
LAYOUTS = {"torchscript": "packed", "neuron": "dense", "neuronx": "dense", "torch-export": "dense"}
# Minute-long analyzer inputs one forward pass of a graph gets (Scorer's ``analyzer_rows``):
# a traced analyzer runs its batch at once, and beyond a few minute-long inputs its
# intermediates leave the cache (`python -m benchmarks.graph_passes runs/traffic`).
ANALYZER_ROWS = 4

GraphLoader = Callable[[Path, str], Any]


def fixed_lengths(
    config: ModelConfig, target: str, per_bucket: bool = False
) -> dict[str, dict[str, Any]]:
    """Preparation overrides that pad some bucketed inputs to their longest length.

    - torch-export proves its guards for every length of a dynamic dimension, and the audio
      encoder's pooling holds only for some (multiples of its stride): that target pads audio
      and video to their full length (one bucket) and keeps text bucketed.
    - An encoder whose forward sizes loops or scans from its input length
      (``traced_lengths_free`` false: the analyzers) is traced at one length: a single graph
      pads its inputs to the longest; one graph per bucket (``per_bucket``) keeps them.
    - Neuron compiles the channel dimension too, at the example's width: the loudness
      analyzer's channel buckets are cut to the first (mono and stereo; wider audio is refused
      naming the field). A TorchScript trace keeps that dimension free.

    Returns:
        Encoder key -> ``{"buckets": []}`` for each such bucketed encoder, and
        ``{"channel_buckets": [first]}`` for a Neuron target.
    """
    fixed: dict[str, dict[str, Any]] = {}
    for key, enc in config.encoders.items():
        entry = get_entry(enc.type)
        names = {f.name for f in fields(entry.settings)}
        if "channel_buckets" in names and target in ("neuron", "neuronx"):
            widths = entry.make_settings(**enc.settings).channel_widths
            fixed[key] = {"channel_buckets": list(widths[:1])}
        if "buckets" not in names:
            continue
        if target == "torch-export":
            pad = config.modality(key) != "text"
        else:
            pad = not per_bucket and not entry.cls.traced_lengths_free
        if pad:
            fixed[key] = {**fixed.get(key, {}), "buckets": []}
    return fixed


@dataclass(frozen=True)
class BucketGraph:
    """One graph to save: the input lengths it was traced or compiled at (empty: free
    lengths) and the function writing it to a path."""

    lengths: Lengths
    save: Callable[[Path], None]


class ArtifactError(ValueError):
    """An artifact directory that cannot be used (missing file, wrong format, bad checksum)."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the package and of the libraries the graph and the preparation depend on
    (the libraries' own ``__version__``, which names the build, e.g. ``2.11.0+cu130``)."""
    try:
        package = importlib.metadata.version("adpolicy-ensemble")
    except importlib.metadata.PackageNotFoundError:
        package = "not installed"
    out = {"adpolicy": package, "python": platform.python_version()}
    for name in ("torch", "torchvision", "torchaudio", "transformers"):
        out[name] = str(importlib.import_module(name).__version__)
    return out


def input_spec(model: AdPolicyEnsemble, layout: str) -> list[dict[str, Any]]:
    """The graph's inputs in order: name, shape with its free first dimension, dtype.

    In a packed layout an encoder's inputs have one row per ad that has its modality
    (``"rows_<modality>"``); in a dense one every input has one row per ad (``"batch"``).
    """
    specs: list[dict[str, Any]] = []
    for key in model.keys:
        encoder = cast(Encoder, model.encoders[key])
        rows = "batch" if layout == "dense" else f"rows_{encoder.modality}"
        for s in encoder.input_spec:
            specs.append({**s.to_json(), "name": f"{key}.{s.name}", "shape": [rows, *s.shape]})
    specs.extend(
        {"name": f"index.{m}", "shape": ["batch"], "dtype": str(torch.int64)}
        for m in model.modalities
    )
    return specs


def output_spec(model: AdPolicyEnsemble) -> list[dict[str, Any]]:
    """The graph's outputs in order (the fields of :class:`ensemble.model.EnsembleOutput`)."""
    policies, measured = model.num_policies, len(model.measurement_names)
    shapes = (["batch", policies], ["batch", len(MODALITIES), policies], ["batch", measured])
    return [
        {"name": name, "shape": shape, "dtype": str(torch.float32)}
        for name, shape in zip(OUTPUT_NAMES, shapes, strict=True)
    ]


def decision_summary(config: ModelConfig) -> dict[str, Any]:
    """Per policy how it decides (as in every row's ``model``): the guarantee's parameters a
    server reports; the thresholds themselves are in the config."""
    return model_info(config)["decisions"]


def build_manifest(
    model: AdPolicyEnsemble,
    config: ModelConfig,
    *,
    target: str,
    graph_file: str,
    graph_sha256: str,
    parity: Mapping[str, Any],
    precision: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
    target_options: Mapping[str, Any] | None = None,
    neuron_check: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of an artifact (what ``manifest.json`` holds).

    Args:
        model: The exported ensemble (input spec, measurement names).
        config: The config as stored in the artifact (relative preparation paths).
        target: ``"torchscript"``, ``"neuron"``, ``"neuronx"`` or ``"torch-export"``.
        graph_file: The graph's file name inside the artifact.
        graph_sha256: Its SHA-256, verified when the artifact is loaded.
        parity: The traced-vs-eager parity report.
        precision: The precision plan and its parity report against fp32.
        source: Where the model came from (checkpoint path, ...).
        target_options: Target-specific settings (Neuron compiler arguments, ...).
        neuron_check: The graph's operators outside Neuron's supported list
            (:meth:`export.opcheck.OperatorReport.to_json`).

    Returns:
        A JSON-serialisable dict.
    """
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "target": target,
        "layout": LAYOUTS[target],
        "graph": {"file": graph_file, "sha256": graph_sha256},
        "config": config.to_json(),
        "policies": config.policy_names,
        "modalities": list(MODALITIES),
        "inputs": input_spec(model, LAYOUTS[target]),
        "outputs": output_spec(model),
        "measurement_names": list(model.measurement_names),
        "decisions": decision_summary(config),
        "preparation": {
            key: {"type": enc.type, "modality": config.modality(key), "settings": enc.settings}
            for key, enc in config.encoders.items()
        },
        "versions": versions(),
        "precision": dict(precision),
        "parity": dict(parity),
        "target_options": dict(target_options or {}),
        "neuron_check": dict(neuron_check or {}),
        "source": dict(source or {}),
        "baseline": None,
    }


def save_artifact(
    directory: str | Path,
    *,
    model: AdPolicyEnsemble,
    save_graph: Callable[[Path], None],
    bucket_graphs: Sequence[BucketGraph] = (),
    target: str = "torchscript",
    graph_file: str | None = None,
    parity: Mapping[str, Any],
    precision: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
    target_options: Mapping[str, Any] | None = None,
    neuron_check: Mapping[str, Any] | None = None,
) -> Path:
    """Write an artifact: the graph, the preparation files, then the manifest (last).

    Args:
        directory: Output directory (created; an existing artifact in it is replaced).
        model: The eager ensemble that was exported, with its config attached.
        save_graph: Writes the graph to the path it is given (e.g. ``torch.jit.save``); with
            ``bucket_graphs``, the longest bucket's.
        bucket_graphs: One graph per length bucket combination, longest last (written as
            the graph itself), listed in the manifest's ``bucket_graphs``; empty for one graph
            with free lengths.
        target: The export target, recorded in the manifest; it picks how the graph loads.
        graph_file: The graph's file name; default from the target.
        parity: The traced-vs-eager parity report.
        precision: The precision plan and its parity report.
        source: Provenance recorded in the manifest.
        target_options: Target-specific settings recorded in the manifest.
        neuron_check: The operator check recorded in the manifest.

    Returns:
        The artifact directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # a half-written artifact never looks whole
    name = graph_file or GRAPH_FILES[target]
    save_graph(out / name)
    buckets = []
    for bucket in bucket_graphs:
        longest = bucket is bucket_graphs[-1]
        file = name if longest else bucket_file(bucket.lengths, Path(name).suffix)
        if not longest:
            bucket.save(out / file)
        buckets.append({"lengths": bucket.lengths, "file": file, "sha256": sha256_of(out / file)})
    config = bundle_encoder_files(model.config, out)
    manifest = build_manifest(
        model,
        config,
        target=target,
        graph_file=name,
        graph_sha256=sha256_of(out / name),
        parity=parity,
        precision=precision,
        source=source,
        target_options=target_options,
        neuron_check=neuron_check,
    )
    if buckets:
        manifest["bucket_graphs"] = buckets
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("artifact written to %s (%s, %s)", out, target, precision.get("dtype", "fp32"))
    return out


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact.

    Attributes:
        directory: The artifact directory.
        graph: The graph, in eval mode: a ``torch.jit.ScriptModule`` (torchscript and Neuron
            targets) or an AOTInductor model (torch-export target). Call it with the tensors
            of ``input_names``; it returns ``(scores, modality_scores, measurements)``.
        manifest: The parsed ``manifest.json``.
        config: The model config, preparation paths resolved against ``directory``.
    """

    directory: Path
    graph: Any
    manifest: dict[str, Any]
    config: ModelConfig

    @property
    def target(self) -> str:
        """``"torchscript"``, ``"neuron"``, ``"neuronx"`` or ``"torch-export"``; a server wraps
        a Neuron graph in :func:`export.neuron.data_parallel` to use every NeuronCore."""
        return str(self.manifest["target"])

    @property
    def dense(self) -> bool:
        """Whether the graph takes dense batches (every ad a row in every modality)."""
        return bool(self.manifest.get("layout") == "dense")

    @property
    def measurement_names(self) -> list[str]:
        return list(self.manifest["measurement_names"])

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.manifest["inputs"]]

    @property
    def policy_names(self) -> list[str]:
        return self.config.policy_names

    def preparer(self, allow_paths: bool) -> AdPreparer:
        """The preparation of this artifact's inputs (tokenizers from the artifact itself)."""
        preparer = AdPreparer(
            self.config,
            allow_paths=allow_paths,
            dense=self.dense,
            overrides=fixed_lengths(
                self.config, self.target, per_bucket=bool(self.manifest.get("bucket_graphs"))
            ),
        )
        if preparer.input_names != self.input_names:
            raise ArtifactError(
                f"{self.directory}: the preparation yields inputs {preparer.input_names}, "
                f"the graph takes {self.input_names}"
            )
        return preparer

    def scorer(self, *, allow_paths: bool, **options: Any) -> Scorer:
        """A :class:`~ensemble.scoring.Scorer` running this artifact's graph (the handler's
        and offline scoring's), its analyzers given :data:`ANALYZER_ROWS` minute-long inputs
        a pass unless ``analyzer_rows`` is among ``options``."""
        return Scorer(
            self,
            config=self.config,
            measurement_names=self.measurement_names,
            preparer=self.preparer(allow_paths),
            **{"analyzer_rows": ANALYZER_ROWS, **options},
        )

    def __call__(self, *inputs: Tensor) -> Sequence[Tensor]:
        """Run the graph in :func:`export.runtime.graph_mode`: ``(scores, modality_scores,
        measurements)``.

        Raises:
            ArtifactError: The graph's scores are not one column per policy of the manifest.
        """
        with graph_mode():
            out: Sequence[Tensor] = self.graph(*inputs)
        if out[0].shape[-1] != len(self.policy_names):
            raise ArtifactError(
                f"{self.directory}: the graph scores {out[0].shape[-1]} policies, "
                f"the manifest lists {len(self.policy_names)}"
            )
        return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Parse and check ``manifest.json`` of an artifact directory."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} not found: not an export artifact")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: not an {FORMAT_NAME} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format {manifest['format_version']} is newer than this code "
            f"({FORMAT_VERSION}); upgrade adpolicy-ensemble"
        )
    return manifest


def verify_graph(directory: str | Path, graph: Mapping[str, Any]) -> Path:
    """A graph file's path, after checking it against its SHA-256 in the manifest.

    Args:
        directory: The artifact directory.
        graph: The manifest's ``graph`` entry, or one of its ``bucket_graphs``.
    """
    path = Path(directory) / graph["file"]
    if not path.is_file():
        raise ArtifactError(f"{path} not found: the artifact is incomplete")
    actual = sha256_of(path)
    if actual != graph["sha256"]:
        raise ArtifactError(
            f"{path}: checksum mismatch (manifest {graph['sha256']}, file {actual}); "
            "the graph was modified or corrupted, re-export it"
        )
    return path


def _frozen(graph: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """In eval mode, parameters without autograd (outputs carry no ``grad_fn``)."""
    for parameter in graph.parameters():
        parameter.requires_grad_(False)
    return graph.eval()


def _load_torchscript(path: Path, device: str) -> Any:
    return _frozen(torch.jit.load(str(path), map_location=device))


def _load_neuron(target: str) -> GraphLoader:
    def load(path: Path, device: str) -> Any:
        from export.neuron import import_sdk

        import_sdk(target)  # registers the Neuron operators the graph calls
        return _frozen(torch.jit.load(str(path)))

    return load


def _load_torch_export(path: Path, device: str) -> Any:
    from export.torch_export import load_package

    if device != "cpu":
        raise ArtifactError(f"{path}: the torch-export package is compiled for the CPU only")
    return load_package(path)


LOADERS: dict[str, GraphLoader] = {
    "torchscript": _load_torchscript,
    "neuron": _load_neuron("neuron"),
    "neuronx": _load_neuron("neuronx"),
    "torch-export": _load_torch_export,
}


def load_artifact(directory: str | Path, *, device: str = "cpu") -> Artifact:
    """Load an artifact written by :func:`save_artifact`, verifying the graph's checksum.

    Args:
        directory: The artifact directory.
        device: Where the graph's tensors go (``"cpu"``, ``"cuda"``); Neuron graphs load on
            the NeuronCores their SDK picks.

    Returns:
        The :class:`Artifact`.

    Raises:
        ArtifactError: Not an artifact, an unknown target, or a checksum mismatch.
    """
    root = Path(directory).resolve()
    manifest = read_manifest(root)
    target = manifest["target"]
    if target not in LOADERS:
        raise ArtifactError(f"{root}: unknown target {target!r}; known: {sorted(LOADERS)}")
    path = verify_graph(root, manifest["graph"])
    try:
        config = resolve_encoder_paths(ModelConfig.from_json(manifest["config"]), root)
    except ValueError as err:
        raise ArtifactError(f"{root}: the manifest's config cannot be used: {err}") from None
    check_metadata(root, manifest, config)
    load = LOADERS[target]
    if not manifest.get("bucket_graphs"):
        return Artifact(root, load(path, device), manifest, config)
    names = [spec["name"] for spec in manifest["inputs"]]
    graphs = [
        (entry["lengths"], load(verify_graph(root, entry), device))
        for entry in manifest["bucket_graphs"]
    ]
    return Artifact(root, BucketGraphs(names, graphs), manifest, config)


def check_metadata(root: Path, manifest: Mapping[str, Any], config: ModelConfig) -> None:
    """Refuse a manifest whose parts disagree: its policy list and the config's, the output
    widths and the policy and measurement counts (a hand-edited or mixed-up artifact would
    otherwise label one policy's scores with another's name), and the decision methods it
    reports and the calibrations and bands its config applies. (A calibration or band that
    cannot be applied at all fails earlier, when the config is read, naming the policy.)

    Raises:
        ArtifactError: Naming every disagreement.
    """
    widths = {spec["name"]: spec["shape"][-1] for spec in manifest["outputs"]}
    expected = {
        "scores": len(config.policy_names),
        "modality_scores": len(config.policy_names),
        "measurements": len(manifest["measurement_names"]),
    }
    problems = [
        f"output {name} is {widths.get(name)} wide, expected {width}"
        for name, width in expected.items()
        if widths.get(name) != width
    ]
    if manifest["policies"] != config.policy_names:
        problems.append(
            f"the manifest lists policies {manifest['policies']}, its config {config.policy_names}"
        )
    stated = manifest.get("decisions")
    if stated is not None and stated != decision_summary(config):
        problems.append(
            f"the manifest states decisions {stated}, its config applies {decision_summary(config)}"
        )
    if problems:
        raise ArtifactError(f"{root}: inconsistent manifest: " + "; ".join(problems))
