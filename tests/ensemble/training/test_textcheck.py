from __future__ import annotations

import pytest

from ensemble.training.textcheck import is_right
from ensemble.training.textdata import NOT_HATE


@pytest.mark.parametrize(
    ("predicted", "expected", "right"),
    [
        ("hate", "hate", True),
        ("offensive", "hate", False),
        ("normal", "offensive", False),
        ("normal", NOT_HATE, True),
        ("offensive", NOT_HATE, True),  # HateCheck's profanity and insults are not hate
        ("hate", NOT_HATE, False),
    ],
)
def test_a_binary_expectation_takes_any_class_but_hate(
    predicted: str, expected: str, right: bool
) -> None:
    assert is_right(predicted, expected) is right


def test_text_policies_are_found_under_any_encoder_key_and_a_set_needs_its_classes(
    tiny_bert_dir, tmp_path
) -> None:
    """A text encoder keyed `copy`, not `text`, left every per-policy table empty (exit 0);
    a set without `meta.class` was a KeyError traceback; a folder of none of the sets printed
    a bare header."""
    import json

    from ensemble import ModelConfig, build_ensemble
    from ensemble.training.textcheck import check_set, text_check
    from tests.ensemble.training.train_data import text_config

    data = text_config(tiny_bert_dir).to_json()
    data["encoders"] = {"copy": data["encoders"]["text"]}
    for policy in data["policies"]:
        policy.update(heads=["copy"], calibrated=True)  # as if trained: scores are shown
    model = build_ensemble(ModelConfig.from_json(data))
    ads = [
        {"id": i, "text": text, "meta": {"class": cls}, "labels": labels}
        for i, text, cls, labels in (
            ("a", "you idiot", "offensive", {"offensive_language": 1, "hate_speech": 0}),
            ("b", "fresh coffee", "normal", {"offensive_language": 0, "hate_speech": 0}),
            ("c", "i hate women", "hate", {"offensive_language": 1, "hate_speech": 1}),
        )
    ]
    assert set(check_set(model, ads)["policies"]) == {"offensive_language", "hate_speech"}
    with pytest.raises(ValueError, match=r"^line 2: no meta\.class"):
        check_set(model, [ads[0], {"id": "c", "text": "tea"}])
    (tmp_path / "benign_ads.jsonl").write_text(json.dumps({"id": "c", "text": "tea"}) + "\n")
    with pytest.raises(ValueError, match=r"benign_ads\.jsonl: line 1: no meta\.class"):
        text_check(model, [tmp_path])
    with pytest.raises(ValueError, match=r"^none of \['behaviour\.jsonl'"):
        text_check(model, [tmp_path / "empty"])
