"""The Davidson converter: the published hold-out, the class mapping, soft labels, cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from ensemble.training.data import read_manifest
from ensemble.training.davidson import clean_tweet, convert_davidson, davidson_ad

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
