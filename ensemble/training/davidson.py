"""Davidson et al. (2017) to a manifest (``convert_davidson``).

Classes -> policy labels, nested because the hate tweets of this set insult with slurs too
(the ``offensive_language`` policy forbids "profanity, slurs or insults")::

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

import html
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ensemble.training.data import file_sha256, write_manifest

log = logging.getLogger(__name__)

DAVIDSON_SHA256 = "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"
DAVIDSON_CLASSES = ("hate", "offensive", "neither")  # the CSV's class 0, 1, 2
HOLDOUT_SIZE = 0.3
SPLIT_SEED = 42


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


def davidson_splits(
    csv_path: str | Path, *, val_size: float = 0.15, check_sha256: bool = True
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The CSV's rows and the row positions of each split: ``test`` the fixed 30 % hold-out
    (:func:`davidson_split`), ``val`` ``val_size`` of the other 70 % stratified by class
    (``random_state=42``), ``train`` the rest.

    Raises:
        ValueError: ``check_sha256`` and the file is not the documented one.
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
    return rows, {"train": train, "val": val, "test": holdout}


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
    rows, splits = davidson_splits(csv_path, val_size=val_size, check_sha256=check_sha256)
    out = Path(out_dir)
    paths = {}
    for name, index in splits.items():
        soft = soft_labels and name == "train"
        ads = [davidson_ad(rows[i], soft=soft, clean=clean_text) for i in index]
        paths[name] = write_manifest(ads, out / f"{name}.jsonl")
    summary = {
        "source_sha256": DAVIDSON_SHA256 if check_sha256 else file_sha256(csv_path),
        "holdout": {"test_size": HOLDOUT_SIZE, "random_state": SPLIT_SEED},
        "val_size": val_size,
        "soft_labels": soft_labels,
        "clean_text": clean_text,
        "rows": {name: len(index) for name, index in splits.items()},
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("Davidson: %s", summary["rows"])
    return paths
