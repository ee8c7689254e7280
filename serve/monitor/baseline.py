"""The baseline: what the model's scores and inputs looked like on data it was validated on.

``build_baseline`` scores a JSONL file of ads (optionally labelled) with a checkpoint or an
export artifact through the SAME preparation as serving, summarises every ad as a capture
record, and keeps per policy its score distribution and flag rate, per modality its presence
rate, per input statistic and analyzer measurement its distribution, and with labels the
accuracy / precision / recall / F1 per policy. It goes into ``baseline.json`` or into an
artifact's manifest under ``"baseline"`` (:func:`attach_baseline`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from encoders.base import MODALITIES
from ensemble.scoring import Scorer, load
from ensemble.training.data import read_manifest
from export.artifact import MANIFEST_FILE, load_artifact
from serve.capture import capture_record
from serve.monitor.drift import DEFAULT_BINS, DEFAULT_SAMPLE_SIZE, Distribution
from serve.monitor.observe import Observations
from serve.monitor.quality import Labels, labelled_metrics, labels_of

BASELINE_FORMAT = 1


@dataclass(frozen=True)
class Pipeline:
    """Scores ads with a checkpoint or an artifact and summarises each as a capture record.

    Attributes:
        scorer: The offline scorer (the same preparation, graph and thresholds as serving).
    """

    scorer: Scorer

    @classmethod
    def load(cls, path: str | Path | None = None) -> Pipeline:
        """The pipeline of an export artifact (a directory with ``manifest.json``) or of a
        checkpoint directory (default: the embedded default model)."""
        if path is not None and (Path(path) / MANIFEST_FILE).is_file():
            return cls(load_artifact(path).scorer(allow_paths=True))
        return cls(load(path))

    def records(
        self,
        ads: Iterable[Mapping[str, Any]],
        *,
        base_dir: Path | None = None,
        batch_size: int = 16,
    ) -> Iterator[dict[str, Any]]:
        """Score ads and summarise each as a capture record, in order.

        Args:
            ads: Ads (mappings with an ``id`` and media fields; media paths allowed).
            base_dir: Directory that relative media paths are resolved against.
            batch_size: Ads per forward pass.
        """
        for item in self.scorer.iter_scored(ads, base_dir=base_dir, batch_size=batch_size):
            stats = item.prepared.stats if item.prepared is not None else {}
            yield capture_record(item.row, stats, timestamp=time.time())


def summarize(
    obs: Observations,
    *,
    labels: Labels | None = None,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline of gathered records.

    Args:
        obs: The records, gathered.
        labels: Ad id -> policy -> 0/1, for the labelled metrics (None: unlabelled).
        bins: Bins per distribution (edges at the baseline's quantiles).
        sample_size: Largest sample kept per distribution (for the KS test and plots).
        source: Provenance to record (data file, model path).

    Returns:
        A JSON-serialisable baseline (see the README's "Monitoring" section).
    """
    if obs.scored == 0:
        raise ValueError("no ad could be scored: a baseline needs at least one")

    def dist(values: list[float], seed: int) -> dict[str, Any]:
        return Distribution.from_values(
            values, bins=bins, sample_size=sample_size, seed=seed
        ).to_json()

    models = obs.models.most_common()
    name, _, version = models[0][0].partition(" ")
    return {
        "baseline_format": BASELINE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"name": name, "version": version},
        "source": dict(source or {}),
        "settings": {"bins": bins, "sample_size": sample_size},
        "records": obs.records,
        "errors": obs.errors,
        "scored": obs.scored,
        "presence": {m: obs.present[m] / obs.scored for m in MODALITIES},
        "policies": {
            policy: {
                "flagged": obs.flagged[policy],
                "flag_rate": obs.flagged[policy] / len(values),
                "scores": dist(values, seed),
            }
            for seed, (policy, values) in enumerate(sorted(obs.scores.items()))
        },
        "inputs": {
            stat: dist(values, seed)
            for seed, (stat, values) in enumerate(sorted(obs.inputs.items()))
        },
        "labelled": labelled_metrics(obs.scored_ads, labels) if labels else None,
    }


def build_baseline(
    model: str | Path | None,
    data: str | Path,
    *,
    batch_size: int = 16,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> dict[str, Any]:
    """Score a JSONL file of ads and summarise it as a baseline.

    The file is a training manifest (:func:`ensemble.training.data.read_manifest`); lines that carry
    ``labels: {policy: 0 | 1}`` also give the baseline's labelled metrics, which
    ``adpolicy monitor report --labels`` compares with.

    Args:
        model: Checkpoint or export artifact directory (None: the embedded default model).
        data: JSONL file of ads; media paths relative to it.
        batch_size: Ads per forward pass.
        bins: Bins per distribution.
        sample_size: Largest sample kept per distribution.

    Returns:
        The baseline (see :func:`summarize`).
    """
    ads = read_manifest(data)
    labels = labels_of(ads)
    pipeline = Pipeline.load(model)
    records = pipeline.records(ads, base_dir=Path(data).parent, batch_size=batch_size)
    return summarize(
        Observations.from_records(records),
        labels=labels or None,
        bins=bins,
        sample_size=sample_size,
        source={"data": str(data), "model": str(model) if model else "default", "ads": len(ads)},
    )


def attach_baseline(artifact_dir: str | Path, baseline: Mapping[str, Any]) -> Path:
    """Store a baseline in an export artifact's manifest (``manifest["baseline"]``).

    Args:
        artifact_dir: The artifact directory.
        baseline: From :func:`build_baseline`.

    Returns:
        The manifest's path.
    """
    path = Path(artifact_dir) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["baseline"] = dict(baseline)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A baseline from ``baseline.json``, an artifact's ``manifest.json`` or its directory.

    Raises:
        ValueError: The file holds no baseline.
    """
    source = Path(path)
    if source.is_dir():
        source = source / MANIFEST_FILE
    data: dict[str, Any] = json.loads(source.read_text())
    baseline = data.get("baseline", data) if "baseline_format" not in data else data
    if not isinstance(baseline, dict) or "baseline_format" not in baseline:
        raise ValueError(f"{source} holds no baseline; make one with `adpolicy monitor baseline`")
    if baseline["baseline_format"] > BASELINE_FORMAT:
        raise ValueError(f"{source}: baseline format {baseline['baseline_format']} is too new")
    return baseline
