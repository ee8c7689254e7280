"""Labelled data: JSONL manifests of ads with per-policy labels, and class rules.

A manifest line is an ad (``id``, any of ``text`` / ``image`` / ``audio`` / ``video``, the
fields scoring takes) plus ``labels``: ``{policy: 0 | 1}``, or a soft label in [0, 1] (e.g. the
share of annotators who said yes). A policy missing from ``labels`` (or ``null``) is unknown
and masked out of the loss and the metrics. An optional ``meta`` mapping travels untouched; a
``meta.class`` names the ad's class for multi-class evaluation (see :class:`ClassRule`)::

    {"id": "ad-1", "text": "...", "labels": {"hate_speech": 0, "offensive_language": 1}}

The converters of public sets to manifests live beside this module (:mod:`.davidson`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ensemble.reader import read_ads

log = logging.getLogger(__name__)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest (any format :func:`ensemble.reader.read_ads` reads); an ad without an
    id is named after its line (``line-N``).

    Raises:
        ValueError: A line that cannot be read, or a label outside [0, 1], with its line.
    """
    ads = []
    for record in read_ads(path):
        where = f"{path}: {record.fallback_id}"
        if record.error is not None:
            raise ValueError(f"{path}: {record.error.errors[0].problem}")
        ad = record.ad
        labels = ad.get("labels", {})
        if not isinstance(labels, dict):
            raise ValueError(f"{where}: labels must be an object {{policy: 0|1}}")
        for policy, value in labels.items():
            if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ValueError(f"{where}: label {policy}={value!r} is not in [0, 1]")
        ad.setdefault("id", record.fallback_id)
        ads.append(ad)
    return ads


def write_manifest(ads: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ads as JSONL (one object a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(ad, ensure_ascii=False) + "\n" for ad in ads))
    return path


def label_tensors(
    ads: Sequence[Mapping[str, Any]], policies: Sequence[str]
) -> tuple[Tensor, Tensor]:
    """Targets and their mask for the given policy order.

    Labels naming a policy outside ``policies`` are ignored, with one warning.

    Returns:
        targets [N, P] float32 in [0, 1] (0 where unknown) and mask [N, P] float32 (1 where
        the label is known).
    """
    column = {name: j for j, name in enumerate(policies)}
    targets = torch.zeros(len(ads), len(policies))
    mask = torch.zeros(len(ads), len(policies))
    ignored: set[str] = set()
    for i, ad in enumerate(ads):
        for name, value in ad.get("labels", {}).items():
            if name not in column:
                ignored.add(name)
            elif value is not None:
                targets[i, column[name]] = float(value)
                mask[i, column[name]] = 1.0
    if ignored:
        log.warning("labels for policies the model does not have were ignored: %s", sorted(ignored))
    return targets, mask


@dataclass(frozen=True)
class ClassRule:
    """Derives one class per ad from policy flags: the first flagged policy in priority order.

    Attributes:
        classes: ``(class name, policy)`` pairs in priority order.
        fallback: The class when none of those policies is flagged.
        reference: Published results to print beside ours, ``{name: {metric: value}}``.
    """

    classes: tuple[tuple[str, str], ...]
    fallback: str
    reference: Mapping[str, Mapping[str, float]] | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.classes] + [self.fallback]

    def class_index(self, flags: Tensor | np.ndarray, policies: Sequence[str]) -> np.ndarray:
        """Args: flags [N, P] bool in ``policies`` order. Returns [N] indices into
        :attr:`names` (the fallback last)."""
        flags = np.asarray(flags, dtype=bool)
        out = np.full(flags.shape[0], len(self.classes))
        for k in reversed(range(len(self.classes))):  # the highest priority is written last
            out[flags[:, policies.index(self.classes[k][1])]] = k
        return out

    def classify(self, flags: Tensor | np.ndarray, policies: Sequence[str]) -> list[str]:
        """Args: flags [N, P] bool in ``policies`` order. Returns N class names."""
        names = self.names
        return [names[i] for i in self.class_index(flags, policies)]


# Davidson: hate if hate_speech is flagged, else offensive if offensive_language is, else neither.
DAVIDSON_RULE = ClassRule(
    classes=(("hate", "hate_speech"), ("offensive", "offensive_language")),
    fallback="neither",
    reference={"hatesonar (tf-idf + logistic regression)": {"accuracy": 0.907, "macro_f1": 0.721}},
)
# The same rule with HateXplain's class names, for sets that use them (every source of the
# text-policy data, see ensemble/training/textdata.py).
THREE_CLASS_RULE = ClassRule(
    classes=(("hate", "hate_speech"), ("offensive", "offensive_language")), fallback="normal"
)
CLASS_RULES = {"davidson": DAVIDSON_RULE, "three-class": THREE_CLASS_RULE}


def parse_class_rule(spec: str) -> ClassRule:
    """A named rule (``"davidson"``) or ``"name:policy,name:policy,fallback"``."""
    if spec in CLASS_RULES:
        return CLASS_RULES[spec]
    *pairs, fallback = spec.split(",")
    if not pairs or ":" in fallback or any(p.count(":") != 1 for p in pairs):
        raise ValueError(f"class rule {spec!r}: expected 'name:policy,...,fallback'")
    return ClassRule(tuple(tuple(p.split(":")) for p in pairs), fallback)  # type: ignore[misc]


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_positions(total: int, size: int) -> list[int]:
    """``size`` fixed, evenly spaced positions in ``range(total)`` (all when fewer)."""
    step = max(1.0, total / size)
    return [math.floor(k * step) for k in range(min(size, total))]
