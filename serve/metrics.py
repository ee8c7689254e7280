"""The handler's custom metrics: declared once, emitted through TorchServe's metrics API.

TorchServe's frontend only exposes a backend metric that its metrics config declares (or all
of them with ``model_metrics_auto_detect``); :func:`metrics_config` adds :data:`METRICS` to
TorchServe's default config, and ``adpolicy serve`` points ``metrics_config`` at the result.
In ``metrics_mode=prometheus`` they are scraped from ``http://127.0.0.1:METRICS_PORT/metrics``.
Histograms use Prometheus' default buckets (0.005 ... 10), so times are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ts
import yaml
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes

from encoders.base import MODALITIES

# Appended by TorchServe's add_metric (ModelName, Level) and by its frontend (Hostname).
DEFAULT_DIMENSIONS = ("ModelName", "Level")
# The only values of the Field label: a request's own field names (an unknown field's name,
# with any character in it) would each make a new series forever.
FIELD_LABELS = frozenset({"ad", "body", "id", *MODALITIES})
UNKNOWN = "unknown"


@dataclass(frozen=True)
class MetricSpec:
    """One custom metric.

    Attributes:
        name: Prometheus name.
        kind: ``"counter"``, ``"gauge"`` or ``"histogram"``.
        unit: Unit, shown in the metric's help text.
        dimensions: Our own label names (TorchServe adds ``DEFAULT_DIMENSIONS`` and Hostname).
        help: What it counts.
    """

    name: str
    kind: str
    unit: str
    dimensions: tuple[str, ...]
    help: str

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "dimensions": [*self.dimensions, *DEFAULT_DIMENSIONS],
        }


BATCH_SIZE = MetricSpec(
    "adpolicy_batch_size", "histogram", "requests", (), "requests per handler call"
)
PREPARATION = MetricSpec(
    "adpolicy_preparation_seconds", "histogram", "seconds", (), "parsing + preparing a batch"
)
INFERENCE = MetricSpec(
    "adpolicy_inference_seconds", "histogram", "seconds", (), "one graph run on a batch"
)
SCORED = MetricSpec("adpolicy_ads_scored_total", "counter", "ads", (), "ads answered with scores")
FAILED = MetricSpec(
    "adpolicy_ads_failed_total",
    "counter",
    "ads",
    ("Status", "Field"),
    "ads answered with an error, by HTTP status and the first field at fault (a field that is "
    "not an ad field counts as 'unknown')",
)
FLAGS = MetricSpec("adpolicy_flags_total", "counter", "ads", ("Policy",), "ads flagged, per policy")
SCORES = MetricSpec(
    "adpolicy_score", "histogram", "score", ("Policy",), "scores of scored policies"
)
METRICS = (BATCH_SIZE, PREPARATION, INFERENCE, SCORED, FAILED, FLAGS, SCORES)


def metrics_config(base: Mapping[str, Any]) -> dict[str, Any]:
    """TorchServe's metrics config ``base`` with :data:`METRICS` added to ``model_metrics``."""
    config = dict(base)
    model_metrics = {
        kind: list(specs) for kind, specs in (config.get("model_metrics") or {}).items()
    }
    for spec in METRICS:
        model_metrics.setdefault(spec.kind, []).append(spec.to_config())
    config["model_metrics"] = model_metrics
    return config


def default_metrics_config() -> dict[str, Any]:
    """TorchServe's own default metrics config (``ts/configs/metrics.yaml``)."""
    path = Path(ts.__file__).parent / "configs" / "metrics.yaml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


class HandlerMetrics:
    """Emits the custom metrics of one batch through a TorchServe metrics cache.

    Args:
        cache: ``context.metrics`` (``ts.metrics.metric_cache_abstract.MetricCacheAbstract``).
    """

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def _emit(self, spec: MetricSpec, value: float, *labels: str) -> None:
        dimensions = [Dimension(n, v) for n, v in zip(spec.dimensions, labels, strict=True)]
        self.cache.add_metric(spec.name, value, spec.unit, None, dimensions, MetricTypes(spec.kind))

    def batch(self, size: int, preparation_s: float) -> None:
        """A batch of ``size`` requests was parsed and prepared in ``preparation_s``."""
        self._emit(BATCH_SIZE, size)
        self._emit(PREPARATION, preparation_s)

    def inference(self, seconds: float) -> None:
        """The graph ran once."""
        self._emit(INFERENCE, seconds)

    def results(self, results: Sequence[Mapping[str, Any]], policies: Sequence[str]) -> None:
        """Counts and scores of one batch's results (``ensemble.postprocess`` rows)."""
        ok = [r for r in results if r["status"] == "ok"]
        for failed in (r for r in results if r["status"] != "ok"):
            field = failed["errors"][0]["field"]
            label = field if field in FIELD_LABELS else UNKNOWN
            self._emit(FAILED, 1, str(failed["http_status"]), label)
        if not ok:
            return
        self._emit(SCORED, len(ok))
        for policy in policies:  # the archive's own policy names, a fixed set
            entries = [r["policies"][policy] for r in ok]
            scored = [e for e in entries if e["status"] == "scored"]
            self._emit(FLAGS, sum(bool(e["flag"]) for e in scored), policy)
            for entry in scored:
                self._emit(SCORES, entry["score"], policy)
