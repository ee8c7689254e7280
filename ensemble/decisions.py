"""From a policy's score to a decision: its calibration and its allow / review / block band.

Both are stored per policy in the model config (so in every checkpoint's ``config.json`` and
every export manifest) and applied in ONE place, :class:`~ensemble.postprocess.ResultFormatter`,
which offline scoring, exported artifacts and the TorchServe handler share. The graph itself
keeps returning the raw scores (what training, the threshold rule and the export parity checks
work on); they are fitted by :mod:`ensemble.training.calibrate` (``adpolicy calibrate``).

Decisions: a policy with a :class:`Band` blocks at ``raw score >= block``, allows at
``raw score < allow`` and sends the rest to review; a policy without one keeps its single
threshold (flagged: block, else allow). Thresholds, like the flag threshold, apply to the raw
score: a calibration is monotone, so they mean the same on either, but an isotonic one is flat
over stretches of scores that raw thresholds can still split. The ad's decision (:func:`ad_decision`) is ``block``
if any scored policy blocks, else ``review`` if any reviews, else ``allow``; an ad no policy
could score goes to review.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

EPS = 1e-6
CALIBRATION_METHODS = ("identity", "temperature", "isotonic")
BAND_METHODS = ("learn_then_test", "margin")
Decision = Literal["allow", "review", "block"]
DECISIONS: tuple[Decision, ...] = ("allow", "review", "block")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a policy's score to a calibrated probability.

    Attributes:
        method: ``"identity"``, ``"temperature"`` or ``"isotonic"``.
        temperature: The temperature (``"temperature"``).
        knots_x: Scores of the isotonic knots, increasing (``"isotonic"``).
        knots_y: Probabilities at the knots, non-decreasing (``"isotonic"``).
        ece: Cross-fitted validation ECE of each method tried, before (``"identity"``) and
            after.
    """

    method: str = "identity"
    temperature: float = 1.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    ece: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"calibration: {problem}")

    def _problem(self) -> str | None:
        if self.method not in CALIBRATION_METHODS:
            return f"unknown method {self.method!r}; known: {CALIBRATION_METHODS}"
        if self.method == "temperature" and not (
            self.temperature > 0 and math.isfinite(self.temperature)
        ):
            return f"temperature must be a positive number, got {self.temperature}"
        if self.method == "isotonic":
            x, y = np.asarray(self.knots_x), np.asarray(self.knots_y)
            if len(x) < 1 or len(x) != len(y):
                return f"isotonic knots must be non-empty and paired ({len(x)} x, {len(y)} y)"
            if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                return "isotonic knots must increase in x and not decrease in y"
            if y.min() < 0 or y.max() > 1 or not np.isfinite(x).all():
                return "isotonic knots must be finite with probabilities in [0, 1]"
        return None

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``scores`` (any shape) in [0, 1], float64."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "temperature":
            return sigmoid(logit(scores) / self.temperature)
        if self.method == "isotonic":
            return np.interp(scores, self.knots_x, self.knots_y)
        return scores

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "temperature": self.temperature,
            "knots_x": list(self.knots_x),
            "knots_y": list(self.knots_y),
            "ece": dict(self.ece or {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            method=str(data.get("method", "identity")),
            temperature=float(data.get("temperature", 1.0)),
            knots_x=tuple(float(x) for x in data.get("knots_x", ())),
            knots_y=tuple(float(y) for y in data.get("knots_y", ())),
            ece={k: float(v) for k, v in (data.get("ece") or {}).items()},
        )


def _bound(value: Any, infinite: float) -> float:
    return infinite if value is None else float(value)


@dataclass(frozen=True)
class Band:
    """One policy's two thresholds on its raw score (the graph's) and what they promise.

    Attributes:
        allow: ``score < allow`` is allowed automatically (``-inf``: never).
        block: ``score >= block`` is blocked automatically (``inf``: never).
        method: ``"learn_then_test"`` (learned policies: a guarantee on labelled data) or
            ``"margin"`` (analyzers: review within a margin of the standard's line).
        guarantee: The parameters of the promise: for Learn then Test the targets
            (``block_precision``, ``allow_miss_rate``), ``delta``, ``calibration_size`` and
            what the thresholds did on the calibration set; for a margin its size, unit and
            the measurement it applies to.
    """

    allow: float
    block: float
    method: str
    guarantee: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in BAND_METHODS:
            raise ValueError(f"band: unknown method {self.method!r}; known: {BAND_METHODS}")
        if math.isnan(self.allow) or math.isnan(self.block) or self.allow > self.block:
            raise ValueError(f"band: allow {self.allow} must not exceed block {self.block}")

    def decide(self, score: float) -> Decision:
        """``"allow"``, ``"review"`` or ``"block"``."""
        if score >= self.block:
            return "block"
        return "allow" if score < self.allow else "review"

    def to_json(self) -> dict[str, Any]:
        """JSON with ``null`` for a threshold that never decides (strict JSON has no inf)."""
        return {
            "allow": self.allow if math.isfinite(self.allow) else None,
            "block": self.block if math.isfinite(self.block) else None,
            "method": self.method,
            "guarantee": dict(self.guarantee),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Band:
        return cls(
            allow=_bound(data.get("allow"), -math.inf),
            block=_bound(data.get("block"), math.inf),
            method=str(data.get("method")),
            guarantee=dict(data.get("guarantee") or {}),
        )

    def summary(self) -> dict[str, Any]:
        """The method and its parameters, without the calibration-set outcome."""
        return {
            "method": self.method,
            **{k: v for k, v in self.guarantee.items() if k != "outcome"},
        }


def outcome(scores: np.ndarray, labels: np.ndarray, allow: float, block: float) -> dict[str, float]:
    """What thresholds do on labelled ads: block precision, allow miss rate, review share.

    An outcome with no ad has precision 1 and miss rate 0 (it makes no error).
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    blocked = scores >= block
    allowed = (scores < allow) & ~blocked
    n = max(len(scores), 1)
    return {
        "block_precision": float(labels[blocked].mean()) if blocked.any() else 1.0,
        "allow_miss_rate": float(labels[allowed].mean()) if allowed.any() else 0.0,
        "review_share": float(1 - (blocked.sum() + allowed.sum()) / n),
        "blocked": int(blocked.sum()),
        "allowed": int(allowed.sum()),
    }


def ad_decision(decisions: Iterable[str | None]) -> Decision:
    """The ad's decision from its policies' (None: not scored); see the module docstring."""
    given = [cast(Decision, d) for d in decisions if d is not None]
    if not given:
        return "review"
    return max(given, key=DECISIONS.index)
