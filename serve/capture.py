"""Data capture: one JSON line per scored ad, appended to a file rotated by size.

Like SageMaker's data capture, but no raw media is ever written: a record holds the ad's id, a
timestamp, the model's name and version, the scores, thresholds and flags, the cheap input statistics of
the preparation (``PreparedAd.stats``), the analyzers' measurements and which modalities the ad
carried. ``adpolicy monitor report`` compares these records with a baseline.

Several TorchServe workers (processes) may append to the same file: every :meth:`CaptureWriter.write`
holds an exclusive ``flock`` on ``PATH.lock`` while it rotates (if needed) and appends its lines
with one ``write`` on an ``O_APPEND`` descriptor, so lines never interleave and no worker keeps
writing into a file another one rotated away.

Capture is best effort: a record that cannot be serialised, or a full disk, is logged and
counted in :attr:`CaptureWriter.dropped`, never raised into the request path.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from encoders.base import MODALITIES

log = logging.getLogger(__name__)

CAPTURE_FORMAT = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 5


def modality_of_stat(name: str) -> str:
    """The modality an input statistic describes: its prefix (``"audio_rms_db"`` -> audio)."""
    return name.split("_", 1)[0]


def presence_of(stats: Mapping[str, float]) -> dict[str, bool]:
    """Which modalities an ad carried, from its input statistics (every present field has some).

    Args:
        stats: ``PreparedAd.stats`` of one ad.

    Returns:
        Modality -> present, in ``MODALITIES`` order.
    """
    carried = {modality_of_stat(name) for name in stats}
    return {m: m in carried for m in MODALITIES}


def _timestamp(value: float | datetime) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), tz=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    """Numeric values as floats; NaN and infinities (not JSON) are left out."""
    out = {}
    for name, value in values.items():
        number = float(value)
        if math.isfinite(number):
            out[name] = number
    return out


def capture_record(
    result: Mapping[str, Any], stats: Mapping[str, float], *, timestamp: float | datetime
) -> dict[str, Any]:
    """The capture summary of one result row (see ``ensemble.postprocess``); no raw media.

    Args:
        result: One result dict: ``status: "ok"`` rows carry ``model``, ``policies``,
            ``flags`` and ``measurements``; ``status: "error"`` rows ``http_status`` and
            ``errors`` (and ``model`` when the server added it).
        stats: The ad's input statistics (``PreparedAd.stats``; empty for an ad that failed
            preparation).
        timestamp: When the request was scored: seconds since the epoch or an aware datetime.

    Returns:
        ``{"capture_format", "id", "timestamp", "status", ...}``; for a scored ad also
        ``model``, ``scores`` and ``thresholds`` (scored policies only), ``flags``, ``stats``,
        ``measurements`` and ``presence`` (modality -> bool); for a failed one ``http_status``,
        ``errors`` and ``model`` when the result has one.
    """
    record: dict[str, Any] = {
        "capture_format": CAPTURE_FORMAT,
        "id": str(result["id"]),
        "timestamp": _timestamp(timestamp),
        "status": result["status"],
    }
    if result["status"] != "ok":
        record["http_status"] = result.get("http_status")
        record["errors"] = list(result.get("errors", []))
        if "model" in result:
            record["model"] = dict(result["model"])
        return record
    record.update(
        model=dict(result["model"]),
        scores={  # the graph's own score, which the threshold applies to
            name: entry.get("raw_score", entry["score"])
            for name, entry in result["policies"].items()
            if entry["status"] == "scored"
        },
        thresholds={
            name: entry["threshold"]
            for name, entry in result["policies"].items()
            if entry["status"] == "scored"
        },
        flags=list(result["flags"]),
        stats=_finite(stats),
        measurements=_finite(result.get("measurements", {})),
        presence=presence_of(stats),
    )
    return record


class CaptureWriter:
    """Appends capture records as JSON lines to ``path``, rotating it by size.

    When a write would take the file past ``max_bytes``, ``path`` becomes ``path.1``, ``path.1``
    becomes ``path.2`` and so on; ``path.{backups}`` is deleted (as ``logging``'s
    ``RotatingFileHandler`` does). Safe across processes (see the module docstring).

    Args:
        path: The capture file (its directory is created).
        max_bytes: Size at which the file is rotated; a single larger write still goes whole
            into a fresh file.
        backups: How many rotated files to keep (0: the file is truncated instead).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError(f"max_bytes must be > 0 and backups >= 0, got {max_bytes}, {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> CaptureWriter | None:
        """A writer from a model-config ``capture:`` section, or None when capture is off.

        Args:
            config: ``{"path": ..., "max_bytes": ..., "backups": ...}`` (only ``path``
                required), or None / an empty mapping for "off".
        """
        if not config or not config.get("path"):
            return None
        return cls(
            config["path"],
            max_bytes=int(config.get("max_bytes", DEFAULT_MAX_BYTES)),
            backups=int(config.get("backups", DEFAULT_BACKUPS)),
        )

    def write(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records, one JSON line each, in one locked write.

        Args:
            records: Capture records (see :func:`capture_record`).

        Returns:
            How many records were written; the others were logged and counted in ``dropped``.
        """
        lines = []
        for record in records:
            try:
                lines.append(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
            except (TypeError, ValueError) as err:
                self.dropped += 1
                log.warning("capture record %r dropped: %s", record.get("id"), err)
        if not lines:
            return 0
        data = "".join(lines).encode()
        try:
            with self._locked():
                self._rotate_if_needed(len(data))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
        except OSError as err:
            self.dropped += len(lines)
            log.warning("%d capture records dropped: %s", len(lines), err)
            return 0
        return len(lines)

    def _locked(self) -> _FileLock:
        return _FileLock(self._lock_path)

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        if self.backups == 0:
            self.path.unlink()
            return
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))


class _FileLock:
    """An exclusive ``flock`` on a lock file, held for a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def capture_files(path: str | Path) -> list[Path]:
    """A capture file and its rotated backups, oldest first (``path.N`` ... ``path.1``, ``path``).

    Args:
        path: The capture file as configured, or a directory: every ``*.jsonl`` in it with its
            backups.
    """
    root = Path(path)
    if root.is_dir():
        return [f for base in sorted(root.glob("*.jsonl")) for f in capture_files(base)]
    backups = [p for p in root.parent.glob(f"{root.name}.*") if p.suffix[1:].isdigit()]
    ordered = sorted(backups, key=lambda p: -int(p.suffix[1:]))
    return [*ordered, *([root] if root.exists() else [])]


def read_capture(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a capture file and its backups, oldest first; unparsable lines skipped.

    Args:
        path: As for :func:`capture_files`.

    Raises:
        FileNotFoundError: No capture file at ``path``.
    """
    files = capture_files(path)
    if not files:
        raise FileNotFoundError(f"no capture file at {path}")
    for file in files:
        with file.open("rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    log.warning("%s:%d: not a JSON line, skipped", file, number)
                    continue
                if (problem := record_problem(record)) is not None:
                    log.warning("%s:%d: not a capture record (%s), skipped", file, number, problem)
                    continue
                yield record


_NUMBERS = ("scores", "thresholds", "stats", "measurements")  # name -> number mappings


def record_problem(record: Any) -> str | None:
    """What keeps ``record`` from being a capture record as :func:`capture_record` writes
    them (and the monitor reads them), or None: a mapping with an ``id``, a ``status`` and an
    ISO ``timestamp``, and, where present, name -> number mappings, a ``model`` mapping,
    ``flags`` a list and ``presence`` a mapping."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for key in ("id", "status", "timestamp"):
        if key not in record:
            return f"no {key}"
    try:
        moment = datetime.fromisoformat(str(record["timestamp"]))
    except ValueError:
        return f"timestamp {str(record['timestamp'])[:40]!r} is not an ISO time"
    if moment.tzinfo is None:
        return f"timestamp {record['timestamp']!r} has no time zone"
    for key in _NUMBERS:
        values = record.get(key, {})
        if not isinstance(values, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
        ):
            return f"{key} is not a mapping of names to numbers"
    for key, kind in (("model", dict), ("presence", dict), ("flags", list)):
        if key in record and not isinstance(record[key], kind):
            return f"{key} is not a JSON {'object' if kind is dict else 'array'}"
    return None
