"""From scores to decisions: score calibration, and allow / review / block thresholds with a
guaranteed error rate (Learn then Test).

Calibration (:func:`fit_calibration`) maps a learned policy's score to a probability. Two
maps are fitted on labelled validation scores and the one with the lower expected calibration
error on the half it was NOT fitted on (two-fold cross-fitting) is kept, refitted on all:

- temperature: ``sigmoid(logit(score) / T)``, one parameter (Guo et al. 2017);
- isotonic: a monotone piecewise-linear map through the pool-adjacent-violators fit
  (Zadrozny and Elkan 2002), stored as knots.

Both are monotone, so neither changes a ranking (ROC-AUC, PR-AUC) and thresholds move with them.

Decision bands (:func:`learn_then_test`), after Angelopoulos, Bates, Candès, Jordan and Lei,
"Learn then Test: Calibrating Predictive Algorithms to Achieve Risk Control" (2021). Per policy
two thresholds: ``score >= block`` blocks automatically, ``score < allow`` allows
automatically, the rest goes to people. For each candidate threshold the null hypothesis
"this threshold breaks the target" is tested with the exact binomial tail of the errors among
the ads it would decide (conditioning on how many it decides), in a fixed sequence from the
most conservative candidate that decides enough ads to pass with ``start_errors`` errors
among them (fixed-sequence testing controls the family-wise error at the level it is run at;
starting where a few errors are tolerated keeps one noisy label among the most extreme scores
from ending the sequence, and so every automatic decision, at its first test). Block and
allow each get ``delta / 2`` (Bonferroni), so with probability at least ``1 - delta`` over the
draw of the calibration set:

- the precision of automatic blocks is at least ``block_precision``, and
- the share of violations among automatic approvals (the miss rate) is at most
  ``allow_miss_rate``,

for ads exchangeable with the calibration set. Among the thresholds that pass, the lowest block
and the highest allow are chosen, which minimises the share sent to review. A target no
candidate can be shown to meet turns that automatic outcome off (block ``inf``: nothing is
blocked without review; allow ``-inf``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import binom
from sklearn.isotonic import IsotonicRegression

from ensemble.decisions import EPS, Band, Calibration, logit, outcome, sigmoid
from ensemble.training.evaluate import expected_calibration_error

CALIBRATION_METHODS = ("temperature", "isotonic")


def _fit(method: str, scores: np.ndarray, labels: np.ndarray) -> Calibration:
    if method == "temperature":
        logits = logit(scores)

        def nll(log_t: float) -> float:
            p = np.clip(sigmoid(logits / np.exp(log_t)), EPS, 1 - EPS)
            return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))

        found = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
        return Calibration("temperature", temperature=float(np.exp(found.x)))
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
        return Calibration(
            "isotonic",
            knots_x=tuple(float(x) for x in iso.X_thresholds_),
            knots_y=tuple(float(y) for y in iso.y_thresholds_),
        )
    raise ValueError(f"unknown calibration method {method!r}; known: {CALIBRATION_METHODS}")


def fit_calibration(
    scores: np.ndarray, labels: np.ndarray, *, methods: tuple[str, ...] = CALIBRATION_METHODS
) -> Calibration:
    """The calibration of one policy, chosen by two-fold cross-fitted ECE (see the module).

    Args:
        scores: [N] validation scores in [0, 1].
        labels: [N] 0/1 labels, both classes present.
        methods: The methods to choose among.

    Returns:
        The chosen method refitted on all of the data, with every method's cross-fitted ECE
        (``"identity"``: the scores as they are). The identity is kept when no method beats it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.min() == labels.max():
        raise ValueError("calibration needs positive and negative labels")
    folds = np.random.default_rng(0).permutation(len(scores)) % 2
    ece = {"identity": expected_calibration_error(scores, labels)}
    for method in methods:
        held_out = np.empty_like(scores)
        for fold in (0, 1):
            fit_on, apply_to = folds != fold, folds == fold
            held_out[apply_to] = _fit(method, scores[fit_on], labels[fit_on])(scores[apply_to])
        ece[method] = expected_calibration_error(held_out, labels)
    best = min(ece, key=ece.__getitem__)
    chosen = Calibration() if best == "identity" else _fit(best, scores, labels)
    return Calibration(chosen.method, chosen.temperature, chosen.knots_x, chosen.knots_y, ece)


class TargetError(ValueError):
    """A :class:`Targets` field out of its range: ``field`` names it, ``problem`` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Targets:
    """What a decision band promises (see :func:`learn_then_test`); checked when made.

    Attributes:
        block_precision: Target precision of automatic blocks, in (0, 1).
        allow_miss_rate: Target miss rate among automatic approvals, in (0, 1).
        delta: Allowed probability that a target fails, in (0, 1).
        start_errors: Each side's sequence starts at the first threshold deciding enough ads
            to pass with this many errors among them (>= 0; see :func:`_fixed_sequence`).

    Raises:
        TargetError: A field out of its range.
    """

    block_precision: float = 0.95
    allow_miss_rate: float = 0.02
    delta: float = 0.1
    start_errors: int = 2

    def __post_init__(self) -> None:
        for name in ("block_precision", "allow_miss_rate", "delta"):
            if not 0 < (value := getattr(self, name)) < 1:
                raise TargetError(name, f"must be in (0, 1), got {value}")
        if self.start_errors < 0:
            raise TargetError("start_errors", f"must be >= 0, got {self.start_errors}")


@dataclass(frozen=True)
class DecisionBand:
    """One policy's two thresholds and the guarantee they were chosen for.

    Attributes:
        allow: ``score < allow`` is allowed automatically (``-inf``: never).
        block: ``score >= block`` is blocked automatically (``inf``: never).
        block_precision: Target precision of automatic blocks.
        allow_miss_rate: Target share of violations among automatic approvals.
        delta: The targets hold with probability at least ``1 - delta`` over the calibration
            draw.
        start_errors: The errors each side's sequence of tests tolerates at its first test.
        calibration_size: Labelled ads the thresholds were chosen on.
        calibration: What the chosen thresholds did on those ads (block precision, allow miss
            rate, review share, counts).
    """

    allow: float
    block: float
    block_precision: float
    allow_miss_rate: float
    delta: float
    start_errors: int
    calibration_size: int
    calibration: Mapping[str, float]

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """``"allow"``, ``"review"`` or ``"block"`` per score."""
        scores = np.asarray(scores)
        return np.where(
            scores >= self.block, "block", np.where(scores < self.allow, "allow", "review")
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "calibration": dict(self.calibration)}

    def as_band(self, calibration: str) -> Band:
        """The :class:`~ensemble.decisions.Band` stored in a policy's config.

        Args:
            calibration: The method of the calibration the thresholds apply after.
        """
        return Band(
            self.allow,
            self.block,
            "learn_then_test",
            {
                "block_precision": self.block_precision,
                "allow_miss_rate": self.allow_miss_rate,
                "delta": self.delta,
                "start_errors": self.start_errors,
                "calibration_size": self.calibration_size,
                "calibration": calibration,
                "outcome": dict(self.calibration),
            },
        )


def first_testable(rate: float, level: float, tolerated: int) -> int:
    """The fewest decided ads among which ``tolerated`` errors still reject "the error rate
    exceeds ``rate``" at ``level`` (with 0: the fewest that can be rejected at all)."""
    decided = math.ceil(math.log(level) / math.log1p(-rate))  # the bound for 0 errors
    while binom.cdf(tolerated, decided, rate) > level:
        decided += 1
    return decided


def _fixed_sequence(
    errors: np.ndarray, decided: np.ndarray, rate: float, level: float, tolerated: int
) -> int:
    """Index of the last hypothesis fixed-sequence testing rejects at ``level`` (-1: none).

    Hypothesis ``j``: the error rate among the ``decided[j]`` ads a threshold decides exceeds
    ``rate``; its p-value is the binomial tail ``P(Binom(decided, rate) <= errors)``. The
    sequence starts at the first threshold deciding :func:`first_testable` ads for
    ``tolerated`` errors; the thresholds before it are passed over without ending it (never
    chosen). Where it starts depends on the targets alone, not on the labels, and as the true
    error rate grows along the order (scores that rank), the first true null that is tested
    still decides whether any is rejected, so the family-wise error stays at most ``level``.
    Starting where a few errors are tolerated keeps one noisy label among the most extreme
    scores from ending the sequence at its first test.
    """
    tested = np.flatnonzero(decided >= first_testable(rate, level, tolerated))
    kept = binom.cdf(errors[tested], decided[tested], rate) <= level
    failed = np.flatnonzero(~kept)
    passed = tested[: failed[0]] if len(failed) else tested
    return int(passed[-1]) if len(passed) else -1


def learn_then_test(scores: np.ndarray, labels: np.ndarray, targets: Targets) -> DecisionBand:
    """Allow / block thresholds with the module's guarantee.

    Args:
        scores: [N] calibration scores in [0, 1] (calibrated or not: only their order counts).
        labels: [N] 0/1, 1 a violation of the policy.
        targets: What the thresholds promise.

    Returns:
        The :class:`DecisionBand`.
    """
    block_precision, allow_miss_rate = targets.block_precision, targets.allow_miss_rate
    delta, start_errors = targets.delta, targets.start_errors
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    candidates = np.unique(scores)  # increasing; a threshold between scores changes nothing
    order = np.argsort(scores)
    sorted_labels = labels[order]
    # at candidate c: the ads with score >= c are the suffix from the first such position
    start = np.searchsorted(scores[order], candidates, side="left")
    positives_from = np.concatenate([np.cumsum(sorted_labels[::-1])[::-1], [0]])
    n_block = len(scores) - start
    errors_block = n_block - positives_from[start]
    # block (score >= c): from the highest candidate down, the most conservative first
    last = _fixed_sequence(
        errors_block[::-1], n_block[::-1], 1 - block_precision, delta / 2, start_errors
    )
    block = float(candidates[::-1][last]) if last >= 0 else float("inf")
    # allow (score < c): from the lowest candidate up; the ads below c are the prefix
    positives_before = np.concatenate([[0], np.cumsum(sorted_labels)])
    last = _fixed_sequence(positives_before[start], start, allow_miss_rate, delta / 2, start_errors)
    allow = float(candidates[last]) if last >= 0 else float("-inf")
    allow = min(allow, block)
    return DecisionBand(
        allow=allow,
        block=block,
        **asdict(targets),
        calibration_size=len(scores),
        calibration=outcome(scores, labels, allow, block),
    )
