"""The text-policy training data: HateXplain's converter and the combined Davidson+HateXplain set.

Label mapping (one table for every source; the 3-class rule reads it back: hate if
``hate_speech`` is flagged, else offensive if ``offensive_language`` is, else normal)::

    source      class                  hate_speech  offensive_language  meta.class
    Davidson    0 hate speech          1            1                   hate
    Davidson    1 offensive language   0            1                   offensive
    Davidson    2 neither              0            0                   normal
    HateXplain  1 hate speech          1            1                   hate
    HateXplain  2 offensive            0            1                   offensive
    HateXplain  0 normal               0            0                   normal
    HateXplain  3 undecided            dropped (in none of the authors' splits)
    augmented   see ensemble.training.augment (benign / counter-speech 0 0, hate 1 1)

Hate is nested in offensive (``offensive_language`` forbids "profanity, slurs or insults",
which hate speech uses too), as the Davidson converter has always done; the rule above makes
the nesting harmless for the 3-class measurement.

Texts go in RAW (Davidson's tweets as in the CSV, HateXplain's already normalised text): the
model's own text normaliser (``TextSettings.normalizer``) cleans both, in training and scoring,
so an evaluation on raw tweets sees the same text as training did.

Splits: HateXplain's are the authors' (``post_id_divisions.json``); Davidson's test is the
fixed 30 % hold-out (:func:`ensemble.data.davidson_split`) and its validation a stratified
15 % of the other 70 %. Training = Davidson train + HateXplain train (+ augmentation);
validation (early stopping, thresholds) = Davidson val + HateXplain val. The test sets
(Davidson hold-out, HateXplain test) are written apart and never trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ensemble.training.data import ClassRule, file_sha256, write_manifest
from ensemble.training.davidson import SPLIT_SEED, davidson_ad, davidson_splits

log = logging.getLogger(__name__)

HATEXPLAIN_SHA256 = {
    "hatexplain.csv": "fc8d5437a6a50d4d4083a60effc0ccbea8df788487c7b3ab50d88a77c3ba023b",
    "post_id_divisions.json": "c2fb0d89862e7897b11ea3e9380753f15a793482b4b70ad0532dfb1212212835",
}
HATEXPLAIN_CLASSES = {0: "normal", 1: "hate", 2: "offensive"}  # category 3 (undecided): dropped
CLASS_LABELS = {
    "hate": {"hate_speech": 1, "offensive_language": 1},
    "offensive": {"hate_speech": 0, "offensive_language": 1},
    "normal": {"hate_speech": 0, "offensive_language": 0},
}
# The 3-class rule of issue 13, with HateXplain's class names and published results.
HATEXPLAIN_RULE = ClassRule(
    classes=(("hate", "hate_speech"), ("offensive", "offensive_language")),
    fallback="normal",
    reference={
        "BERT (Mathew et al. 2021)": {"accuracy": 0.690, "macro_f1": 0.674},
        "BERT-HateXplain (Mathew et al. 2021)": {"accuracy": 0.698, "macro_f1": 0.687},
    },
)


def hatexplain_ads(data_dir: str | Path, *, check_sha256: bool = True) -> dict[str, list[dict]]:
    """HateXplain's posts as manifest ads per the authors' split (``train``, ``val``, ``test``).

    Args:
        data_dir: The folder with ``hatexplain.csv`` and ``post_id_divisions.json``.
        check_sha256: Refuse files whose hashes differ from the documented ones.
    """
    root = Path(data_dir)
    for name, expected in HATEXPLAIN_SHA256.items():
        digest = file_sha256(root / name)
        if check_sha256 and digest != expected:
            raise ValueError(f"{root / name}: sha256 {digest} is not the documented {expected}")
    frame = pd.read_csv(root / "hatexplain.csv", keep_default_na=False)
    frame = frame.rename(columns={frame.columns[0]: "post_id"})
    divisions = json.loads((root / "post_id_divisions.json").read_text())
    by_id = {row["post_id"]: row for row in frame.to_dict("records")}
    out: dict[str, list[dict]] = {}
    for split, ids in divisions.items():
        ads = []
        for post_id in ids:
            row = by_id[post_id]
            cls = HATEXPLAIN_CLASSES.get(int(row["category"]))
            if cls is None:
                continue
            ads.append(
                {
                    "id": f"hatexplain-{post_id}",
                    "text": str(row["text"]),
                    "labels": dict(CLASS_LABELS[cls]),
                    "meta": {"class": cls, "source": "hatexplain"},
                }
            )
        out[split] = ads
    return out


def davidson_ads(
    csv_path: str | Path, *, val_size: float = 0.15, check_sha256: bool = True
) -> dict[str, list[dict]]:
    """Davidson's RAW tweets per split (``train``, ``val``, ``test`` = the 30 % hold-out),
    classes renamed to HateXplain's (``neither`` -> ``normal``)."""
    rows, splits = davidson_splits(csv_path, val_size=val_size, check_sha256=check_sha256)
    out = {}
    for name, index in splits.items():
        ads = []
        for i in index:
            ad = davidson_ad(rows[i], soft=False, clean=False)
            cls = {"neither": "normal"}.get(ad["meta"]["class"], ad["meta"]["class"])
            ad["meta"] = {**ad["meta"], "class": cls, "source": "davidson"}
            ads.append(ad)
        out[name] = ads
    return out


def convert_text_policies(
    davidson_csv: str | Path,
    hatexplain_dir: str | Path,
    out_dir: str | Path,
    *,
    augment: bool = True,
    seed: int = SPLIT_SEED,
    check_sha256: bool = True,
) -> dict[str, Path]:
    """Write the text-policy manifests: ``train``, ``val`` and the test sets.

    Files: ``train.jsonl`` (Davidson train + HateXplain train + augmentation),
    ``val.jsonl`` (Davidson val + HateXplain val), ``davidson_test.jsonl`` (raw 30 %
    hold-out), ``hatexplain_val.jsonl``, ``hatexplain_test.jsonl``, ``split.json``.

    Args:
        davidson_csv: Davidson's ``labeled_data.csv``.
        hatexplain_dir: The HateXplain folder.
        out_dir: Output directory (created).
        augment: Add :func:`ensemble.training.augment.augmentations` of the training rows.
        seed: Seed of the augmentation.
        check_sha256: Refuse source files of other hashes.
    """
    from ensemble.training.augment import augmentations

    dav = davidson_ads(davidson_csv, check_sha256=check_sha256)
    hx = hatexplain_ads(hatexplain_dir, check_sha256=check_sha256)
    train = dav["train"] + hx["train"]
    extra = augmentations(train, seed=seed) if augment else []
    out = Path(out_dir)
    files: dict[str, list[dict[str, Any]]] = {
        "train": train + extra,
        "val": dav["val"] + hx["val"],
        "davidson_test": dav["test"],
        "hatexplain_val": hx["val"],
        "hatexplain_test": hx["test"],
    }
    paths = {name: write_manifest(ads, out / f"{name}.jsonl") for name, ads in files.items()}
    summary = {
        "sources": {
            "davidson": file_sha256(davidson_csv),
            **{k: file_sha256(Path(hatexplain_dir) / k) for k in HATEXPLAIN_SHA256},
        },
        "rows": {name: len(ads) for name, ads in files.items()},
        "augmented": _count(extra),
        "seed": seed,
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("text policies: %s", summary["rows"])
    return paths


def _count(ads: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ad in ads:
        kind = ad["meta"]["augment"]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
