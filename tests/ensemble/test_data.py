"""Manifests, label masks, class rules and the Davidson converter (split, mapping, soft labels)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

from ensemble.data import (
    DAVIDSON_RULE,
    ClassRule,
    clean_tweet,
    convert_davidson,
    davidson_ad,
    label_tensors,
    parse_class_rule,
    read_manifest,
    sample_positions,
)


def test_manifest_reads_ads_and_names_lines(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"id": "a", "text": "hi", "labels": {"hate_speech": 1}})
        + "\n\n"
        + json.dumps({"text": "no id", "labels": {"hate_speech": 0.25}})
        + "\n"
    )
    ads = read_manifest(path)
    assert [a["id"] for a in ads] == ["a", "line-3"]
    assert ads[1]["labels"] == {"hate_speech": 0.25}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "m.jsonl:2: not valid JSON"),
        ('["a list"]', "m.jsonl:2: expected a JSON object"),
        ('{"text": "x", "labels": {"hate_speech": 2}}', "hate_speech=2 is not in"),
        ('{"text": "x", "labels": {"hate_speech": "yes"}}', "is not in"),
        ('{"text": "x", "labels": [1]}', "labels must be an object"),
    ],
)
def test_bad_manifest_lines_are_refused_with_their_line(tmp_path, line, message) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_manifest(path)


def test_label_mask_marks_missing_and_null_labels_unknown(caplog) -> None:
    ads: list[dict[str, Any]] = [
        {"labels": {"a": 1, "b": 0}},
        {"labels": {"a": None}},
        {"labels": {"b": 0.5, "other": 1}},
        {},
    ]
    targets, mask = label_tensors(ads, ["a", "b"])
    assert mask.tolist() == [[1, 1], [0, 0], [0, 1], [0, 0]]
    assert targets.tolist() == [[1, 0], [0, 0], [0, 0.5], [0, 0]]
    assert "other" in caplog.text  # a label the model has no policy for is reported


def test_class_rule_takes_the_first_flagged_policy_in_priority_order() -> None:
    policies = ["offensive_language", "hate_speech"]
    flags = torch.tensor([[True, True], [True, False], [False, True], [False, False]])
    assert DAVIDSON_RULE.classify(flags, policies) == ["hate", "offensive", "hate", "neither"]
    assert DAVIDSON_RULE.names == ["hate", "offensive", "neither"]


def test_class_rules_parse_by_name_or_spec() -> None:
    assert parse_class_rule("davidson") is DAVIDSON_RULE
    rule = parse_class_rule("bad:hate_speech,ok")
    assert rule == ClassRule((("bad", "hate_speech"),), "ok")
    with pytest.raises(ValueError, match="expected"):
        parse_class_rule("no-pairs")


def test_sample_positions_are_fixed_and_spread() -> None:
    assert sample_positions(10, 4) == [0, 2, 5, 7]
    assert sample_positions(3, 5) == [0, 1, 2]


ROW = {"row": 7, "count": 4, "hate_speech": 1, "offensive_language": 2, "neither": 1, "tweet": "t"}


@pytest.mark.parametrize(
    ("cls", "name", "labels"),
    [
        (0, "hate", {"offensive_language": 1, "hate_speech": 1}),
        (1, "offensive", {"offensive_language": 1, "hate_speech": 0}),
        (2, "neither", {"offensive_language": 0, "hate_speech": 0}),
    ],
)
def test_davidson_mapping(cls, name, labels) -> None:
    ad = davidson_ad({**ROW, "class": cls}, soft=False)
    assert ad["labels"] == labels
    assert ad["meta"]["class"] == name
    assert ad["id"] == "davidson-7"


def test_tweets_are_cleaned_of_entities_mentions_and_links() -> None:
    raw = "RT @Some_One: so &amp; so &#128514;&#128514;  http://t.co/x1 ok"
    assert clean_tweet(raw) == "RT @user: so & so \U0001f602\U0001f602 http ok"
    assert davidson_ad({**ROW, "class": 2, "tweet": raw}, soft=False, clean=False)["text"] == raw


def test_davidson_soft_labels_are_vote_shares_with_the_same_nesting() -> None:
    ad = davidson_ad({**ROW, "class": 1}, soft=True)
    assert ad["labels"] == {"offensive_language": 0.75, "hate_speech": 0.25}
    assert ad["meta"]["votes"] == {"hate_speech": 1, "offensive_language": 2, "neither": 1}


def test_davidson_conversion_keeps_the_published_holdout(shared_dir, tmp_path) -> None:
    csv = shared_dir / "data" / "davidson" / "labeled_data.csv"
    paths = convert_davidson(csv, tmp_path, soft_labels=True)
    frame = pd.read_csv(csv)
    _, holdout = train_test_split(list(range(len(frame))), test_size=0.3, random_state=42)
    splits = {name: read_manifest(path) for name, path in paths.items()}
    position = {f"davidson-{index}": i for i, index in enumerate(frame["Unnamed: 0"])}
    rows = {name: [position[a["id"]] for a in ads] for name, ads in splits.items()}
    assert rows["test"] == list(holdout)
    assert len(rows["train"]) + len(rows["val"]) + len(rows["test"]) == len(frame) == 24783
    assert not set(rows["train"]) & set(rows["val"])
    assert not (set(rows["train"]) | set(rows["val"])) & set(rows["test"])
    # validation is stratified: its hate share is the 70 %'s
    learn = frame["class"].to_numpy()[np.array(rows["train"] + rows["val"])]
    val_hate = np.mean([a["meta"]["class"] == "hate" for a in splits["val"]])
    assert val_hate == pytest.approx(np.mean(learn == 0), abs=0.002)
    # soft labels for training only; validation and test carry the published classes
    assert any(0 < a["labels"]["hate_speech"] < 1 for a in splits["train"])
    for ad in splits["val"] + splits["test"]:
        cls = ad["meta"]["class"]
        assert ad["labels"] == {
            "offensive_language": int(cls != "neither"),
            "hate_speech": int(cls == "hate"),
        }
        assert ad["text"] == clean_tweet(frame["tweet"][position[ad["id"]]])


def test_davidson_refuses_a_changed_file(tmp_path) -> None:
    csv = tmp_path / "labeled_data.csv"
    csv.write_text(",count,hate_speech,offensive_language,neither,class,tweet\n0,3,0,0,3,2,hi\n")
    with pytest.raises(ValueError, match="sha256"):
        convert_davidson(csv, tmp_path / "out")
