"""Comparing served results with offline ones."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

ATOL = 1e-5


def assert_results_close(got: Any, want: Any, *, atol: float = ATOL, path: str = "") -> None:
    """Equal structure and values; floats within ``atol`` (results are rounded to 1e-6)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not an object"
        assert got.keys() == want.keys(), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_results_close(got[key], want[key], atol=atol, path=f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{path}: {got!r} is not an array"
        assert len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_results_close(g, w, atol=atol, path=f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, int | float), f"{path}: {got!r} is not a number"
        assert math.isclose(got, want, rel_tol=0, abs_tol=atol), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def without_timings(value: Any) -> Any:
    """``value`` without its ``ms`` entries (wall times differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "ms"}
    return value


def max_score_diff(got: Mapping[str, Any], want: Mapping[str, Any]) -> float:
    """Largest absolute difference between two results' policy and per-modality scores."""
    diffs = [
        abs(got["policies"][p]["score"] - entry["score"])
        for p, entry in want["policies"].items()
        if entry["score"] is not None
    ]
    diffs += [
        abs(got["modalities"][m][p] - score)
        for m, scores in want["modalities"].items()
        for p, score in scores.items()
    ]
    return max(diffs, default=0.0)


def prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        assert match, f"not a Prometheus sample: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_value(
    samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str
) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )
