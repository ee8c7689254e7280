"""The text normaliser: HateXplain's form from raw posts and ad copy, applied by the preparation."""

from __future__ import annotations

import pytest
import torch

from encoders.text import HFTextEncoder, TextPreparer, TextSettings
from encoders.textnorm import get_normalizer, social_v1

RAW = (
    "!!! RT @mayasolovely: As a woman you shouldn&#8217;t complain &amp; http://t.co/x #MAGA",
    "Gay couples' photography packages, book your engagement shoot. \U0001f389",
    "b!tch f*ck sh1t a$$hole",
    "Summer sale: 30% off all sandals. www.example.com/sale",
)


def test_social_v1_gives_hatexplains_form() -> None:
    assert social_v1(RAW[0]) == "user as a woman you shouldnt complain maga"
    assert social_v1(RAW[1]) == "gay couples photography packages book your engagement shoot"
    assert social_v1(RAW[2]) == "bitch fck shit asshole"
    assert social_v1(RAW[3]) == "summer sale 30 off all sandals"


@pytest.mark.parametrize("text", RAW)
def test_social_v1_is_idempotent(text: str) -> None:
    assert social_v1(social_v1(text)) == social_v1(text)


def test_unknown_normaliser_is_refused() -> None:
    with pytest.raises(ValueError, match="social-v1"):
        get_normalizer("nope")


def test_raw_text_and_its_training_form_score_the_same(tiny_bert_dir) -> None:
    settings = TextSettings(model_dir=str(tiny_bert_dir), max_length=32, normalizer="social-v1")
    preparer = TextPreparer(settings)
    encoder = HFTextEncoder(settings).eval()
    for text in RAW:
        raw, clean = preparer.prepare(text), preparer.prepare(social_v1(text))
        assert torch.equal(raw["input_ids"], clean["input_ids"])
        with torch.no_grad():
            torch.testing.assert_close(
                encoder(raw["input_ids"][None], raw["attention_mask"][None]),
                encoder(clean["input_ids"][None], clean["attention_mask"][None]),
            )


def test_tuned_layers_leave_gradients_to_the_top_layers_only(tiny_bert_dir) -> None:
    encoder = HFTextEncoder(TextSettings(model_dir=str(tiny_bert_dir), tuned_layers=1))
    assert encoder.tuned == ("model.encoder.layer.1",)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable
    assert all(n.startswith("model.encoder.layer.1.") for n in trainable)
