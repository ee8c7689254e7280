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
    TOXIGEN     hate_* sentence        1            1                   hate
    TOXIGEN     neutral_* sentence     0            0                   normal
    augmented   see ensemble.training.augment (benign / counter-speech 0 0, hate 1 1)

Hate is nested in offensive (``offensive_language`` forbids "profanity, slurs or insults",
which hate speech uses too), as the Davidson converter has always done; the rule above makes
the nesting harmless for the 3-class measurement.

Texts go in RAW (Davidson's tweets as in the CSV, HateXplain's already normalised text): the
model's own text normaliser (``TextSettings.normalizer``) cleans both, in training and scoring,
so an evaluation on raw tweets sees the same text as training did.

Splits: HateXplain's are the authors' (``post_id_divisions.json``); Davidson's test is the
fixed 30 % hold-out (:func:`ensemble.data.davidson_split`) and its validation a stratified
15 % of the other 70 %; TOXIGEN's human-written sentences (``corpora/toxigen.jsonl``) are
split 70/30 by a hash of their text, and the training part counted :data:`TOXIGEN_REPEAT`
times. Training = Davidson train + HateXplain train (+ augmentation) + TOXIGEN train;
validation (early stopping, thresholds) = Davidson val + HateXplain val. The test sets
(Davidson hold-out, HateXplain test, TOXIGEN test) are written apart and never trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ensemble.training.data import ClassRule, file_sha256, read_manifest, write_manifest
from ensemble.training.davidson import SPLIT_SEED, davidson_ad, davidson_splits

log = logging.getLogger(__name__)

HATEXPLAIN_SHA256 = {
    "hatexplain.csv": "fc8d5437a6a50d4d4083a60effc0ccbea8df788487c7b3ab50d88a77c3ba023b",
    "post_id_divisions.json": "c2fb0d89862e7897b11ea3e9380753f15a793482b4b70ad0532dfb1212212835",
}
CORPORA = Path(__file__).parent / "corpora"
TOXIGEN = CORPORA / "toxigen.jsonl"
TOXIGEN_SHA256 = "54fe8a884b13716782c3dd11a74dc9ec16d493499efae604c4073e8a36a343d8"
TOXIGEN_REPEAT = 3  # 254 hate and 203 benign training sentences against 42 090 other rows
HATECHECK = CORPORA / "hatecheck_test_suite_cases.csv"
HATECHECK_SHA256 = "ecf0dc1e93fccc90b6f880e632b19e635c0f0a68b3157915a9e20b6938f121cf"
# The expected class of HateCheck's non-hateful cases: any but hate (its cases of profanity or
# of abuse at individuals are non-hateful and rightly offensive under our policies).
NOT_HATE = "not_hate"
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


def _check_sha256(path: str | Path, expected: str) -> None:
    digest = file_sha256(path)
    if digest != expected:
        raise ValueError(f"{path}: sha256 {digest} is not the documented {expected}")


def hatexplain_ads(data_dir: str | Path, *, check_sha256: bool = True) -> dict[str, list[dict]]:
    """HateXplain's posts as manifest ads per the authors' split (``train``, ``val``, ``test``).

    Args:
        data_dir: The folder with ``hatexplain.csv`` and ``post_id_divisions.json``.
        check_sha256: Refuse files whose hashes differ from the documented ones.
    """
    root = Path(data_dir)
    if check_sha256:
        for name, expected in HATEXPLAIN_SHA256.items():
            _check_sha256(root / name, expected)
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


def toxigen_ads(path: str | Path = TOXIGEN) -> dict[str, list[dict]]:
    """TOXIGEN's human-written sentences (``corpora/README.md``) as ads, ``train`` (70 %) and
    ``test`` (30 %): a sentence's split is fixed by the sha256 of its text, so adding or
    dropping sentences moves no other one.

    Raises:
        ValueError: The file's sha256 is not the documented one.
    """
    _check_sha256(path, TOXIGEN_SHA256)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        key = hashlib.sha256(row["text"].encode()).hexdigest()
        split = "test" if int(key[:8], 16) % 10 < 3 else "train"
        out[split].append(
            {
                "id": f"toxigen-{key[:12]}",
                "text": row["text"],
                "labels": dict(CLASS_LABELS[row["class"]]),
                "meta": {"class": row["class"], "group": row["group"], "source": "toxigen"},
            }
        )
    return out


def hatecheck_ads(path: str | Path = HATECHECK) -> list[dict]:
    """HateCheck's 3 728 functional tests (``corpora/README.md``) as ads, for evaluation only.

    Binary, as its authors score it: ``labels`` name ``hate_speech`` alone, ``meta.class`` is
    ``hate`` or :data:`NOT_HATE`; ``meta.functionality`` is HateCheck's and ``meta.group`` its
    target where a case names one.

    Raises:
        ValueError: The file's sha256 is not the documented one.
    """
    _check_sha256(path, HATECHECK_SHA256)
    ads = []
    for row in pd.read_csv(path, keep_default_na=False).to_dict("records"):
        hateful = row["label_gold"] == "hateful"
        meta = {
            "class": "hate" if hateful else NOT_HATE,
            "functionality": row["functionality"],
            "source": "hatecheck",
        }
        if row["target_ident"]:
            meta["group"] = row["target_ident"]
        ads.append(
            {
                "id": f"hatecheck-{row['case_id']}",
                "text": row["test_case"],
                "labels": {"hate_speech": int(hateful)},
                "meta": meta,
            }
        )
    return ads


def convert_text_policies(
    davidson_csv: str | Path,
    hatexplain_dir: str | Path,
    out_dir: str | Path,
    *,
    augment: bool = True,
    toxigen: bool = True,
    seed: int = SPLIT_SEED,
    check_sha256: bool = True,
) -> dict[str, Path]:
    """Write the text-policy manifests: ``train``, ``val`` and the test sets.

    Files: ``train.jsonl`` (Davidson train + HateXplain train + augmentation + TOXIGEN
    train, less any row that is a line of an evaluation set), ``val.jsonl`` (Davidson val +
    HateXplain val), ``davidson_test.jsonl`` (raw 30 % hold-out), ``hatexplain_val.jsonl``,
    ``hatexplain_test.jsonl``, ``toxigen_test.jsonl``, ``split.json``.

    Args:
        davidson_csv: Davidson's ``labeled_data.csv``.
        hatexplain_dir: The HateXplain folder.
        out_dir: Output directory (created).
        augment: Add :func:`ensemble.training.augment.augmentations` of the training rows.
        toxigen: Add TOXIGEN's training sentences (:func:`toxigen_ads`), after augmentation.
        seed: Seed of the augmentation.
        check_sha256: Refuse source files of other hashes.
    """
    from ensemble.training.augment import augmentations

    dav = davidson_ads(davidson_csv, check_sha256=check_sha256)
    hx = hatexplain_ads(hatexplain_dir, check_sha256=check_sha256)
    train = dav["train"] + hx["train"]
    extra = augmentations(train, seed=seed) if augment else []
    tox = toxigen_ads() if toxigen else {"train": [], "test": []}
    train, dropped = apart_from_evaluation(train + extra + _repeated(tox["train"], TOXIGEN_REPEAT))
    out = Path(out_dir)
    files: dict[str, list[dict[str, Any]]] = {
        "train": train,
        "val": dav["val"] + hx["val"],
        "davidson_test": dav["test"],
        "hatexplain_val": hx["val"],
        "hatexplain_test": hx["test"],
    }
    if toxigen:
        files["toxigen_test"] = tox["test"]
    paths = {name: write_manifest(ads, out / f"{name}.jsonl") for name, ads in files.items()}
    summary = {
        "sources": {
            "davidson": file_sha256(davidson_csv),
            **{k: file_sha256(Path(hatexplain_dir) / k) for k in HATEXPLAIN_SHA256},
            **({"toxigen": TOXIGEN_SHA256} if toxigen else {}),
        },
        "rows": {name: len(ads) for name, ads in files.items()},
        "augmented": _count(extra),
        "dropped_as_evaluation_text": dropped,
        "seed": seed,
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("text policies: %s", summary["rows"])
    return paths


def apart_from_evaluation(ads: list[dict]) -> tuple[list[dict], int]:
    """The training rows whose text, normalised as the shipped default was trained to read it
    (``social-v3``), is no line of an evaluation set (the generated sets and HateCheck); and
    how many were dropped. Short generic sentences ("I hate Muslims") can come out of the
    augmentation or a source as they stand in a test."""
    from encoders.textnorm import social_v3
    from ensemble.training.textsets import behaviour, benign_ads, idiom_ads

    tests = {social_v3(ad["text"]) for ad in behaviour() + benign_ads() + idiom_ads()}
    tests |= {social_v3(ad["text"]) for ad in hatecheck_ads()}
    kept = [ad for ad in ads if social_v3(ad["text"]) not in tests]
    return kept, len(ads) - len(kept)


def social_words(manifest: str | Path) -> list[str]:
    """The protected words of ``social-v4`` (:func:`encoders.spelling.protected_words`): those
    of the training manifest's source rows (Davidson, HateXplain, TOXIGEN; not the augmented
    ones, whose spelling variants are made on purpose), read as the spelling repair reads them."""
    from encoders.spelling import protected_words
    from encoders.textnorm import social_v4_cleaned

    rows = read_manifest(manifest)
    return protected_words(social_v4_cleaned(ad["text"]) for ad in rows if "source" in ad["meta"])


def _repeated(ads: list[dict], times: int) -> list[dict]:
    """Each ad ``times`` times, the copies' ids suffixed ``-1``, ``-2``... (ids stay unique)."""
    return [ad if k == 0 else {**ad, "id": f"{ad['id']}-{k}"} for k in range(times) for ad in ads]


def _count(ads: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ad in ads:
        kind = ad["meta"]["augment"]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
