"""Drift statistics between a baseline distribution and production values.

A baseline distribution keeps what the tests need and nothing raw: summary numbers, quantiles,
counts on bins fixed at baseline time (edges at the baseline's deciles, so every bin starts
with about the same mass, which keeps the population stability index stable) and a bounded
random sample for the two-sample Kolmogorov-Smirnov test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_BINS = 10
DEFAULT_SAMPLE_SIZE = 2000


def _round(value: float) -> float:
    return float(f"{value:.6g}")


@dataclass(frozen=True)
class Distribution:
    """The baseline of one numeric quantity (a policy's score, an input statistic).

    Attributes:
        count: Values seen.
        mean: Their mean.
        std: Their standard deviation.
        min: Smallest value.
        max: Largest value.
        quantiles: ``QUANTILES`` as strings -> value.
        edges: Interior bin edges, increasing; bin ``i`` holds ``edges[i-1] <= v < edges[i]``
            (the outer bins are open), so there are ``len(edges) + 1`` bins.
        counts: Values per bin.
        sample: At most ``sample_size`` values drawn without replacement (6 significant
            digits), for the KS test and the plots.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float]
    edges: list[float]
    counts: list[int]
    sample: list[float]

    @classmethod
    def from_values(
        cls,
        values: Sequence[float] | np.ndarray,
        *,
        bins: int = DEFAULT_BINS,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        seed: int = 0,
    ) -> Distribution:
        """Summarise baseline values (at least one).

        Args:
            values: The baseline values.
            bins: Bins wanted; repeated quantiles (discrete values) merge, so there may be fewer.
            sample_size: Largest sample kept.
            seed: Seed of the sample draw.
        """
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            raise ValueError("a distribution needs at least one value")
        inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(data, inner)) if bins > 1 else np.empty(0)
        rng = np.random.default_rng(seed)
        sample = data if data.size <= sample_size else rng.choice(data, sample_size, replace=False)
        return cls(
            count=int(data.size),
            mean=_round(float(data.mean())),
            std=_round(float(data.std())),
            min=_round(float(data.min())),
            max=_round(float(data.max())),
            quantiles={
                str(q): _round(float(v))
                for q, v in zip(QUANTILES, np.quantile(data, QUANTILES), strict=True)
            },
            edges=[float(e) for e in edges],
            counts=bin_counts(data, edges).tolist(),
            sample=[_round(float(v)) for v in sample],
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Distribution:
        return cls(**data)


def bin_counts(
    values: Sequence[float] | np.ndarray, edges: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Values per bin of :attr:`Distribution.edges`: ``[len(edges) + 1]`` integers."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values), side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def _smoothed(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Proportions with half a pseudo-count per bin (Jeffreys), so an empty bin is finite."""
    c = np.asarray(counts, dtype=np.float64) + 0.5
    return c / c.sum()


def psi(expected: Sequence[int] | np.ndarray, actual: Sequence[int] | np.ndarray) -> float:
    """Population stability index, ``sum((a - e) * ln(a / e))`` over the bins.

    Args:
        expected: Baseline counts per bin.
        actual: Production counts on the same bins.
    """
    e, a = _smoothed(expected), _smoothed(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: Sequence[int] | np.ndarray, actual: Sequence[int] | np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) between binned baseline and production."""
    return float(jensenshannon(_smoothed(expected), _smoothed(actual), base=2))


def ks_test(sample: Sequence[float], values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: ``(statistic, p-value)``, two-sided.

    ``values`` are rounded as the baseline's sample was: a tie with a stored value that was
    rounded only on one side would otherwise split, and a discrete statistic (four distinct
    clip loudnesses) would look shifted by a whole step of its distribution function.
    """
    result = sps.ks_2samp(np.asarray(sample), np.asarray([_round(float(v)) for v in values]))
    return float(result.statistic), float(result.pvalue)


def proportion_test(hits_a: int, total_a: int, hits_b: int, total_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when it is undefined)."""
    if total_a == 0 or total_b == 0:
        return 1.0
    pooled = (hits_a + hits_b) / (total_a + total_b)
    variance = pooled * (1 - pooled) * (1 / total_a + 1 / total_b)
    if variance == 0:
        return 1.0
    z = (hits_b / total_b - hits_a / total_a) / np.sqrt(variance)
    return float(2 * sps.norm.sf(abs(z)))


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (the false discovery rate at which each rejects)."""
    if not pvalues:
        return []
    return [float(p) for p in sps.false_discovery_control(np.asarray(pvalues), method="bh")]
