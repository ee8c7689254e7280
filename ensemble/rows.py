"""What one ad comes in as (a :class:`Record`) and goes out as (a :class:`Row`).

The same row shape leaves offline scoring, the TorchServe handler and the fan-out client:
``id``, ``status`` (``"ok"`` or ``"error"``), ``model`` and ``warnings`` always; the ad's
``decision`` (``allow`` / ``review`` / ``block``), calibrated scores, flags and decisions per
policy, the per-modality breakdown and measurements when scored; ``http_status`` and
``errors`` (one ``{field, error}`` per problem) when not; ``explanation`` when asked for
(:mod:`ensemble.explain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from encoders.base import InputError
from ensemble.config import ModelConfig
from ensemble.decisions import Decision

MAX_ID_CHARS = 256


class ModelInfo(TypedDict):
    """The model a row was scored by (:func:`model_info`; ``decisions`` is absent only from
    rows merged from servers that do not report it)."""

    name: str
    version: str
    decisions: NotRequired[dict[str, dict[str, Any]]]


def model_info(config: ModelConfig) -> ModelInfo:
    """The ``model`` of every row scored, or refused, under ``config``: its name, version and
    per policy how it decides (:meth:`ensemble.config.Policy.decision_summary`)."""
    return {
        "name": config.name,
        "version": config.version,
        "decisions": {p.name: p.decision_summary() for p in config.policies},
    }


class FieldError(TypedDict):
    field: str
    error: str


class Row(TypedDict):
    """One ad's result, scored or not (see the module docstring)."""

    id: str
    status: Literal["ok", "error"]
    model: ModelInfo
    warnings: list[str]
    decision: NotRequired[Decision]
    flags: NotRequired[list[str]]
    policies: NotRequired[dict[str, dict[str, Any]]]
    modalities: NotRequired[dict[str, dict[str, float]]]
    measurements: NotRequired[dict[str, float]]
    http_status: NotRequired[int]
    errors: NotRequired[list[FieldError]]
    explanation: NotRequired[dict[str, Any]]


class AdError(ValueError):
    """Every problem of one ad; ``errors`` holds one :class:`InputError` per bad field, and
    ``ad`` what of the ad could be read (its ``id``, for the error row), if anything."""

    def __init__(self, errors: Sequence[InputError], ad: Mapping[str, Any] | None = None) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)
        self.ad = ad

    @classmethod
    def of(cls, field: str, problem: str, status: int = 400) -> AdError:
        """An ad error with one problem."""
        return cls([InputError(field, problem, status)])

    @property
    def status(self) -> int:
        """The HTTP status for the ad: 413 when any field is too large, else the first one's."""
        codes = [e.status for e in self.errors]
        return 413 if 413 in codes else codes[0]

    def to_json(self) -> list[FieldError]:
        return [{"field": e.field, "error": e.problem} for e in self.errors]


@dataclass(frozen=True)
class Record:
    """One ad as read from a file, a list or a request, before preparation.

    Attributes:
        ad: The parsed ad (anything; the preparation checks it), None when unreadable.
        fallback_id: The id when the ad has no usable one of its own: ``"line-N"`` in a file,
            ``"#N"`` in a list, the request id on a server.
        error: Why the ad could not even be read (a line that is not JSON, ...).
    """

    ad: Any
    fallback_id: str
    error: AdError | None = None

    @property
    def id(self) -> str:
        return ad_id(self.ad, self.fallback_id)


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an ad id (None when it can): a non-empty string of at most
    ``MAX_ID_CHARS`` characters that UTF-8 can encode, or an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"expected a string or integer, got {type(value).__name__}"
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS:
        return f"must be 1 to {MAX_ID_CHARS} characters"
    if not text.isprintable():
        return "holds control or unprintable characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def ad_id(ad: Any, fallback: str) -> str:
    """THE id rule: the ad's own ``id`` when usable (:func:`id_problem`), else ``fallback``."""
    value = ad.get("id") if isinstance(ad, Mapping) else None
    return str(value) if value is not None and id_problem(value) is None else fallback


def error_row(
    ad_id: str, error: AdError, model: ModelInfo, warnings: list[str] | None = None
) -> Row:
    """The row of an ad that could not be scored."""
    return {
        "id": ad_id,
        "status": "error",
        "model": model,
        "warnings": list(warnings or []),
        "http_status": error.status,
        "errors": error.to_json(),
    }
