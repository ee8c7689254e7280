"""Text-policy data: the label table, HateXplain's split, raw Davidson, augmentation, eval sets."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import pytest

from encoders.spelling import PROTECTED_FILE
from encoders.textnorm import social_v1, social_v3
from ensemble.training.augment import (
    GROUPS,
    OPINION_FRAMES,
    UNPROTECTED,
    augmentations,
    misspell,
)
from ensemble.training.data import THREE_CLASS_RULE, read_manifest
from ensemble.training.textdata import (
    CLASS_LABELS,
    NOT_HATE,
    TOXIGEN_REPEAT,
    apart_from_evaluation,
    convert_text_policies,
    hatecheck_ads,
    hatexplain_ads,
    social_words,
    toxigen_ads,
)
from ensemble.training.textsets import AD_TEMPLATES, behaviour, benign_ads, idiom_ads


def test_label_table_is_nested_and_read_back_by_the_rule() -> None:
    import torch

    policies = ["offensive_language", "hate_speech"]
    for cls, labels in CLASS_LABELS.items():
        flags = torch.tensor([[bool(labels[p]) for p in policies]])
        assert THREE_CLASS_RULE.classify(flags, policies) == [cls]
    assert CLASS_LABELS["hate"] == {"hate_speech": 1, "offensive_language": 1}


def _train_rows() -> list[dict]:
    rows = []
    for i, (cls, text) in enumerate(
        [
            ("normal", "the black community center opens today"),
            ("hate", "muslims are scum and should leave"),
            ("offensive", "shut up you stupid bitch"),
        ]
        * 30
    ):
        rows.append({"id": f"r{i}", "text": text, "meta": {"class": cls}})
    return rows


def test_augmentation_is_deterministic_and_labelled_by_the_table() -> None:
    first, second = augmentations(_train_rows(), seed=1), augmentations(_train_rows(), seed=1)
    assert first == second
    kinds = Counter(ad["meta"]["augment"] for ad in first)
    assert set(kinds) >= {
        "identity_swap", "identity_benign", "counter_speech", "hate_template", "composed"
    }  # fmt: skip
    assert len({ad["id"] for ad in first}) == len(first)
    composed = Counter(ad["meta"]["class"] for ad in first if ad["meta"]["augment"] == "composed")
    assert composed["hate"] >= 600
    assert composed["normal"] >= 400
    assert composed["offensive"] >= 200
    for ad in first:
        assert ad["labels"] == CLASS_LABELS[ad["meta"]["class"]]
        assert social_v1(ad["text"]) == ad["text"]  # written in the normalised form


def test_every_frame_carries_hate_praise_and_unprotected_insults() -> None:
    """A question, an opinion or a pronoun frames hateful and benign clauses alike, so no frame
    becomes a cue for one class; insults at people who are no protected group are offensive."""
    composed = [
        ad for ad in augmentations(_train_rows(), seed=3) if ad["meta"]["augment"] == "composed"
    ]
    for prefix in (*OPINION_FRAMES, "why are", "arent", "dont you think", "i met"):
        classes = {ad["meta"]["class"] for ad in composed if ad["text"].startswith(prefix + " ")}
        assert {"hate", "normal"} <= classes, prefix

    def names(ad: dict, nouns: Iterable[str]) -> bool:
        return any(f" {noun} " in f" {ad['text']} " for noun in nouns)

    groups = [noun for _, noun in GROUPS]
    insults = [ad for ad in composed if names(ad, UNPROTECTED[:4]) and not names(ad, groups)]
    assert insults
    assert {ad["meta"]["class"] for ad in insults} == {"offensive"}
    hate = [
        ad for ad in composed
        if ad["text"].startswith("i hate ") and names(ad, groups) and not names(ad, UNPROTECTED)
    ]  # fmt: skip
    assert hate
    assert {ad["meta"]["class"] for ad in hate} == {"hate"}
    assert "normal" in {ad["meta"]["class"] for ad in composed if ad["text"].startswith("i love ")}


def test_stereotypes_denials_and_follow_ups_come_in_both_classes() -> None:
    """What is said of the group decides: a stereotype, praise denied and a judgement in the
    next sentence are hate, their good or negated-insult twins in the same frames normal."""
    composed = [
        ad for ad in augmentations(_train_rows(), seed=5) if ad["meta"]["augment"] == "composed"
    ]
    for opener in ("typical", "wherever", "not one of the", "you will never find", "a bus full of"):
        classes = Counter(ad["meta"]["class"] for ad in composed if ad["text"].startswith(opener))
        assert classes["hate"] >= 5, opener
        assert classes["normal"] >= 5, opener


def test_a_harm_wished_is_hate_and_the_same_harm_kept_from_anyone_normal() -> None:
    """The negation decides nothing: the same harms are wished on groups (hate) and kept from
    groups and everyday people (normal), so "should not" + a harm is no cue for hate."""
    harms = [ad for ad in augmentations(_train_rows(), seed=7) if ad["id"].startswith("aug-harm_")]
    wished = [ad for ad in harms if ad["id"].startswith("aug-harm_wished-")]
    kept = [ad for ad in harms if ad["id"].startswith("aug-harm_kept")]
    assert {ad["meta"]["class"] for ad in wished} == {"hate"}
    assert {ad["meta"]["class"] for ad in kept} == {"normal"}
    for harm in ("go hungry", "suffer alone", "die"):
        assert any(harm in ad["text"] for ad in wished), harm
        assert any(harm in ad["text"] for ad in kept), harm
    people = [ad for ad in kept if ad["id"].startswith("aug-harm_kept_people-")]
    assert any(ad["text"].startswith("no child ") for ad in people)
    assert len(wished) >= 100
    assert len(kept) >= 200


@pytest.mark.parametrize("op", ["space", "drop", "swap", "double", "spread"])
def test_misspell_keeps_the_first_letter(op: str) -> None:
    import random

    out = misspell("terrible", op, random.Random(0))
    assert out != "terrible"
    assert out[0] == "t"


def test_eval_sets_meet_their_sizes_and_are_apart_from_training() -> None:
    ads = benign_ads()
    assert len(ads) >= 500
    assert len({ad["meta"]["group"] for ad in ads}) >= 25
    assert len({ad["meta"]["category"] for ad in ads}) >= 20
    assert all(ad["meta"]["class"] == "normal" for ad in ads)
    tests = behaviour()
    assert len({ad["meta"]["functionality"] for ad in tests}) >= 10
    training = {social_v3(ad["text"]) for ad in augmentations(_train_rows(), seed=42)}
    idioms = idiom_ads()
    assert len({ad["meta"]["kind"] for ad in idioms}) == 4
    assert all(ad["meta"]["class"] == "normal" for ad in idioms)
    assert not training & {social_v3(ad["text"]) for ad in ads + tests + idioms}
    assert len(GROUPS) >= 25
    assert len(AD_TEMPLATES) >= 15


def test_hatexplain_split_and_raw_davidson(shared_dir, tmp_path) -> None:
    data = shared_dir / "data"
    splits = hatexplain_ads(data / "hatexplain")
    assert {k: len(v) for k, v in splits.items()} == {"train": 15383, "val": 1922, "test": 1924}
    paths = convert_text_policies(
        data / "davidson" / "labeled_data.csv", data / "hatexplain", tmp_path, augment=False
    )
    test = read_manifest(paths["davidson_test"])
    assert len(test) == 7435
    assert any("&amp;" in ad["text"] or "@" in ad["text"] for ad in test)  # raw tweets
    train = read_manifest(paths["train"])
    train_ids = {ad["id"] for ad in train}
    assert len(train_ids) == len(train)
    for name in ("val", "davidson_test", "hatexplain_val", "hatexplain_test", "toxigen_test"):
        assert not train_ids & {ad["id"] for ad in read_manifest(paths[name])}
    tox = [ad for ad in train if ad["meta"]["source"] == "toxigen"]
    assert len(tox) == TOXIGEN_REPEAT * len(toxigen_ads()["train"])
    assert json.loads((tmp_path / "split.json").read_text())["rows"]["davidson_test"] == 7435
    # the shipped protected words of social-v4 are what `adpolicy data social-words` writes
    assert social_words(paths["train"]) == PROTECTED_FILE.read_text().split()


def test_toxigen_sentences_are_split_apart_by_their_text_and_labelled_by_the_table() -> None:
    splits = toxigen_ads()
    assert {k: len(v) for k, v in splits.items()} == {"train": 457, "test": 211}
    texts = {k: {ad["text"] for ad in v} for k, v in splits.items()}
    assert not texts["train"] & texts["test"]
    assert not {social_v3(t) for t in texts["train"]} & {social_v3(t) for t in texts["test"]}
    for ad in splits["train"] + splits["test"]:
        assert ad["labels"] == CLASS_LABELS[ad["meta"]["class"]]
    assert {ad["meta"]["class"] for ad in splits["test"]} == {"hate", "normal"}
    assert toxigen_ads()["test"] == splits["test"]


def test_toxigen_and_hatecheck_files_are_checked_against_their_hashes(tmp_path) -> None:
    for read, name in ((toxigen_ads, "toxigen.jsonl"), (hatecheck_ads, "cases.csv")):
        changed = tmp_path / name
        changed.write_text("text,label_gold\n")
        with pytest.raises(ValueError, match="sha256"):
            read(changed)


def test_hatecheck_is_binary_and_apart_from_training() -> None:
    cases = hatecheck_ads()
    assert len(cases) == 3728
    assert len({ad["meta"]["functionality"] for ad in cases}) == 29
    assert {ad["meta"]["class"] for ad in cases} == {"hate", NOT_HATE}
    for ad in cases:
        assert set(ad["labels"]) == {"hate_speech"}
        assert ad["labels"]["hate_speech"] == (ad["meta"]["class"] == "hate")
    rows = augmentations(_train_rows(), seed=42) + toxigen_ads()["train"]
    kept, dropped = apart_from_evaluation(rows)
    assert dropped == len(rows) - len(kept) > 0  # "I hate Muslims." is a case and a frame's line
    assert not {social_v3(ad["text"]) for ad in kept} & {social_v3(ad["text"]) for ad in cases}
