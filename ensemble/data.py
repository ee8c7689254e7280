"""Labelled data: JSONL manifests of ads with per-policy labels, and the Davidson converter.

A manifest line is an ad (``id``, any of ``text`` / ``image`` / ``audio`` / ``video``, the
fields scoring takes) plus ``labels``: ``{policy: 0 | 1}``, or a soft label in [0, 1] (e.g. the
share of annotators who said yes). A policy missing from ``labels`` (or ``null``) is unknown
and masked out of the loss and the metrics. An optional ``meta`` mapping travels untouched; a
``meta.class`` names the ad's class for multi-class evaluation (see :class:`ClassRule`)::

    {"id": "ad-1", "text": "...", "labels": {"hate_speech": 0, "offensive_language": 1}}

Davidson et al. (2017) to a manifest (``convert_davidson``). Classes -> policy labels, nested
because the hate tweets of this set insult with slurs too (the ``offensive_language`` policy
forbids "profanity, slurs or insults")::

    class 0 hate speech         -> hate_speech 1, offensive_language 1
    class 1 offensive language  -> hate_speech 0, offensive_language 1
    class 2 neither             -> hate_speech 0, offensive_language 0

Tweets are cleaned as is usual for tweets (and as ad copy never needs): HTML entities
unescaped (the CSV keeps Twitter's ``&amp;``, ``&#128514;``...), user mentions replaced by
``@user`` and links by ``http``, whitespace collapsed; ``clean_text=False`` keeps them raw.

With ``soft_labels`` the TRAINING rows carry the annotators' vote shares instead:
``hate_speech = hate votes / count``, ``offensive_language = (hate + offensive votes) / count``
(the same nesting). Validation and test rows always carry the hard labels of ``class``, so
thresholds and metrics are measured against the published classes.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

log = logging.getLogger(__name__)

DAVIDSON_SHA256 = "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"
DAVIDSON_CLASSES = ("hate", "offensive", "neither")  # the CSV's class 0, 1, 2
HOLDOUT_SIZE = 0.3
SPLIT_SEED = 42


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL manifest; an ad without an id is named ``line-N``.

    Raises:
        ValueError: A line that is not a JSON object, or a label outside [0, 1], with its line.
    """
    ads = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ad = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(ad, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        labels = ad.get("labels", {})
        if not isinstance(labels, dict):
            raise ValueError(f"{path}:{number}: labels must be an object {{policy: 0|1}}")
        for policy, value in labels.items():
            if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ValueError(f"{path}:{number}: label {policy}={value!r} is not in [0, 1]")
        ad.setdefault("id", f"line-{number}")
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

    def classify(self, flags: Tensor, policies: Sequence[str]) -> list[str]:
        """Args: flags [N, P] bool in ``policies`` order. Returns N class names."""
        out = [self.fallback] * flags.shape[0]
        for name, policy in reversed(self.classes):  # the highest priority is written last
            for i in torch.nonzero(flags[:, policies.index(policy)]).flatten().tolist():
                out[i] = name
        return out


# Davidson: hate if hate_speech is flagged, else offensive if offensive_language is, else neither.
DAVIDSON_RULE = ClassRule(
    classes=(("hate", "hate_speech"), ("offensive", "offensive_language")),
    fallback="neither",
    reference={"hatesonar (tf-idf + logistic regression)": {"accuracy": 0.907, "macro_f1": 0.721}},
)
# The same rule with HateXplain's class names, for sets that use them (every source of the
# text-policy data, see ensemble/textdata.py).
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


def davidson_split(num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed hold-out: ``train_test_split(rows, test_size=0.3, random_state=42)``.

    Returns:
        Row positions (file order) of the 70 % to learn from and the 30 % hold-out.
    """
    learn, holdout = train_test_split(
        np.arange(num_rows), test_size=HOLDOUT_SIZE, random_state=SPLIT_SEED
    )
    return learn, holdout


def read_davidson(csv_path: str | Path) -> list[dict[str, Any]]:
    """The CSV's rows in file order, its unnamed index column as ``row``."""
    frame = pd.read_csv(csv_path).rename(columns={"Unnamed: 0": "row"})
    return frame.to_dict("records")


def clean_tweet(text: str) -> str:
    """Unescape HTML entities, mentions -> ``@user``, links -> ``http``, collapse whitespace."""
    text = html.unescape(text)
    text = re.sub(r"@\w+", "@user", text)
    text = re.sub(r"https?://\S+", "http", text)
    return " ".join(text.split())


def davidson_ad(row: Mapping[str, Any], *, soft: bool, clean: bool = True) -> dict[str, Any]:
    """One CSV row as a manifest ad (labels per the module's mapping).

    The id is ``davidson-<the CSV's own index column>`` (which skips some numbers, so it is
    not the row's position in the file).
    """
    votes = {k: int(row[k]) for k in ("hate_speech", "offensive_language", "neither")}
    cls = DAVIDSON_CLASSES[int(row["class"])]
    if soft:
        count = int(row["count"])
        labels = {
            "offensive_language": (votes["hate_speech"] + votes["offensive_language"]) / count,
            "hate_speech": votes["hate_speech"] / count,
        }
    else:
        labels = {"offensive_language": int(cls != "neither"), "hate_speech": int(cls == "hate")}
    return {
        "id": f"davidson-{row['row']}",
        "text": clean_tweet(row["tweet"]) if clean else row["tweet"],
        "labels": labels,
        "meta": {"class": cls, "votes": votes},
    }


def convert_davidson(
    csv_path: str | Path,
    out_dir: str | Path,
    *,
    val_size: float = 0.15,
    soft_labels: bool = False,
    clean_text: bool = True,
    check_sha256: bool = True,
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` and ``split.json`` from the CSV.

    ``test`` is the fixed 30 % hold-out (:func:`davidson_split`); ``val`` is ``val_size`` of
    the other 70 %, stratified by class (``random_state=42``); ``train`` is the rest.

    Args:
        csv_path: ``labeled_data.csv`` of the Davidson et al. repository.
        out_dir: Output directory (created).
        val_size: Share of the 70 % kept for validation (early stopping, thresholds).
        soft_labels: Vote shares as training labels (validation and test stay hard).
        clean_text: Clean the tweets (:func:`clean_tweet`).
        check_sha256: Refuse a CSV whose hash differs from the documented one.

    Returns:
        Split name -> manifest path.
    """
    digest = file_sha256(csv_path)
    if check_sha256 and digest != DAVIDSON_SHA256:
        raise ValueError(f"{csv_path}: sha256 {digest} is not the documented {DAVIDSON_SHA256}")
    rows = read_davidson(csv_path)
    learn, holdout = davidson_split(len(rows))
    classes = np.array([row["class"] for row in rows])
    train, val = train_test_split(
        learn, test_size=val_size, random_state=SPLIT_SEED, stratify=classes[learn]
    )
    out = Path(out_dir)
    paths = {}
    for name, index, soft in (
        ("train", train, soft_labels),
        ("val", val, False),
        ("test", holdout, False),
    ):
        ads = [davidson_ad(rows[i], soft=soft, clean=clean_text) for i in index]
        paths[name] = write_manifest(ads, out / f"{name}.jsonl")
    summary = {
        "source_sha256": digest,
        "holdout": {"test_size": HOLDOUT_SIZE, "random_state": SPLIT_SEED},
        "val_size": val_size,
        "soft_labels": soft_labels,
        "clean_text": clean_text,
        "rows": {"train": len(train), "val": len(val), "test": len(holdout)},
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("Davidson: %s", summary["rows"])
    return paths


def sample_positions(total: int, size: int) -> list[int]:
    """``size`` fixed, evenly spaced positions in ``range(total)`` (all when fewer)."""
    step = max(1.0, total / size)
    return [math.floor(k * step) for k in range(min(size, total))]
