"""What a set of capture records shows: the raw values the baseline and the report start from.

A baseline is built from records made the same way as production's (scoring a data file and
summarising each result with :func:`serve.capture.capture_record`), so both sides are read by
this one function and there is no second definition of a score, a flag or a statistic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from encoders.base import MODALITIES


@dataclass
class Observations:
    """Capture records gathered per quantity.

    Attributes:
        records: Records read.
        errors: Records of ads that failed preparation.
        scores: Policy -> its scores, over the ads on which it was scored.
        flagged: Policy -> how many of those ads it flagged.
        inputs: Input statistic or analyzer measurement -> its values (ads that carried it).
        present: Modality -> how many scored ads carried it.
        models: ``"name version"`` -> records.
        scored_ads: Policy -> ad id -> (score, threshold), for matching labels.
        first: Earliest timestamp (ISO 8601) or None.
        last: Latest timestamp or None.
    """

    records: int = 0
    errors: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)
    flagged: Counter[str] = field(default_factory=Counter)
    inputs: dict[str, list[float]] = field(default_factory=dict)
    present: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    scored_ads: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None

    @property
    def scored(self) -> int:
        """Records of ads that were scored (not failed)."""
        return self.records - self.errors

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Observations:
        """Gather capture records (see :func:`serve.capture.capture_record`)."""
        obs = cls()
        for record in records:
            obs.add(record)
        return obs

    def add(self, record: Mapping[str, Any]) -> None:
        """Add one capture record."""
        self.records += 1
        stamp = record.get("timestamp")
        if stamp is not None:
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)
        if record.get("status") != "ok":
            self.errors += 1
            return
        model = record.get("model", {})
        self.models[f"{model.get('name')} {model.get('version')}"] += 1
        flags = set(record.get("flags", []))
        thresholds = record.get("thresholds", {})
        for policy, score in record.get("scores", {}).items():
            self.scores.setdefault(policy, []).append(float(score))
            self.flagged[policy] += policy in flags
            if policy in thresholds:
                by_ad = self.scored_ads.setdefault(policy, {})
                by_ad[str(record["id"])] = (float(score), float(thresholds[policy]))
        for source in ("stats", "measurements"):
            for name, value in record.get(source, {}).items():
                self.inputs.setdefault(name, []).append(float(value))
        presence = record.get("presence", {})
        for modality in MODALITIES:
            self.present[modality] += bool(presence.get(modality))


def select(
    records: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Mapping[str, Any]]:
    """The records of one model and time window (one capture file may serve several models).

    Args:
        records: Capture records.
        model: ``NAME`` or ``NAME:VERSION``; records without a model (failed ads scored
            offline) are left out when this is given.
        since: Keep records at or after this (timezone-aware) moment.
        until: Keep records before it.
    """
    name, _, version = (model or "").partition(":")
    for record in records:
        if model is not None:
            scored_by = record.get("model") or {}
            if scored_by.get("name") != name or (version and scored_by.get("version") != version):
                continue
        if since is not None or until is not None:
            moment = datetime.fromisoformat(record["timestamp"])
            if (since is not None and moment < since) or (until is not None and moment >= until):
                continue
        yield record
