"""The shipped default model: small, calibrated text heads (and lexicon) that reproduce their
recorded metrics.

The default is built by the README's three commands (convert Davidson, train, evaluate with
``--record``); CI does not train it. The shipped heads are checked against what was recorded
on the 30 % hold-out when they were built, on a fixed sample of 256 hold-out tweets.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from ensemble import from_pretrained
from ensemble.scoring import DEFAULT_DIR
from ensemble.training.data import DAVIDSON_RULE
from ensemble.training.davidson import davidson_ad, davidson_split, read_davidson
from ensemble.training.evaluate import measure, score_ads

TEXT_POLICIES = ("offensive_language", "hate_speech")


def _record() -> dict:
    return json.loads((DEFAULT_DIR / "evaluation.json").read_text())


def test_shipped_default_is_small_calibrated_and_recorded() -> None:
    config = json.loads((DEFAULT_DIR / "config.json").read_text())
    assert config["checkpoint"]["weights"] == "heads"
    # heads + the 30522 x 32 text lexicon (~4 MB), never MiniLM's own 90 MB
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 5_000_000
    stored = load_file(str(DEFAULT_DIR / "model.safetensors"))
    assert "encoders.text.lexicon.table" in stored
    assert not any(k.startswith("encoders.text.model.") for k in stored)
    policies = {p["name"]: p for p in config["policies"]}
    record = _record()
    for name in TEXT_POLICIES:
        assert policies[name]["calibrated"]
        assert 0 < policies[name]["threshold"] < 1
        assert record["metrics"]["policies"][name]["threshold"] == policies[name]["threshold"]
    assert record["class_rule"] == "davidson"
    assert record["metrics"]["n"] == 7435  # the whole hold-out
    assert record["metrics"]["classes"]["reference"][
        "hatesonar (tf-idf + logistic regression)"
    ] == {
        "accuracy": 0.907,
        "macro_f1": 0.721,
    }


@pytest.mark.slow
def test_shipped_heads_reproduce_the_recorded_holdout_sample(shared_dir) -> None:
    rows = read_davidson(shared_dir / "data" / "davidson" / "labeled_data.csv")
    _, holdout = davidson_split(len(rows))
    ads = {ad["id"]: ad for ad in (davidson_ad(rows[i], soft=False) for i in holdout)}
    recorded = _record()["sample"]
    sample = [ads[i] for i in recorded["ids"]]  # a KeyError: the sample left the hold-out
    assert len(sample) == 256
    model = from_pretrained(DEFAULT_DIR)
    scores, applicable = score_ads(model, sample, progress=False)
    config = model.config
    assert config is not None
    thresholds = [p.threshold for p in config.policies]
    ours = measure(config.policy_names, thresholds, scores, applicable, sample, DAVIDSON_RULE)
    want = recorded["metrics"]
    assert ours.classes is not None
    assert ours.classes["confusion"] == want["classes"]["confusion"]
    assert ours.classes["macro_f1"] == pytest.approx(want["classes"]["macro_f1"], abs=1e-9)
    for name in TEXT_POLICIES:
        got, expected = ours.metrics[name], want["policies"][name]
        assert got["confusion"] == expected["confusion"]
        for key in ("pr_auc", "roc_auc", "ece", "brier"):
            assert got[key] == pytest.approx(expected[key], abs=1e-4), key
