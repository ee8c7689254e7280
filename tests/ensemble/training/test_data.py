"""Manifests, label masks and class rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from ensemble.training.data import (
    DAVIDSON_RULE,
    ClassRule,
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
        ("{oops", "m.jsonl: line 2: not valid JSON"),
        ('["a list"]', "m.jsonl: line 2: expected a JSON object"),
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
