"""The text normaliser: HateXplain's form from raw posts and ad copy, applied by the preparation."""

from __future__ import annotations

import pytest
import torch

from encoders.text import HFTextEncoder, TextPreparer, TextSettings
from encoders.textnorm import get_normalizer, social_v1, social_v2

RAW = (
    "!!! RT @mayasolovely: As a woman you shouldn&#8217;t complain &amp; http://t.co/x #MAGA",
    "Gay couples' photography packages, book your engagement shoot. \U0001f389",
    "b!tch f*ck sh1t a$$hole",
    "Summer sale: 30% off all sandals. www.example.com/sale",
    "You are w o r t h l e s s, we h8 you all. Gr8 deals at K-Mart!",
)


def test_social_v1_gives_hatexplains_form() -> None:
    assert social_v1(RAW[0]) == "user as a woman you shouldnt complain maga"
    assert social_v1(RAW[1]) == "gay couples photography packages book your engagement shoot"
    assert social_v1(RAW[2]) == "bitch fck shit asshole"
    assert social_v1(RAW[3]) == "summer sale 30 off all sandals"


@pytest.mark.parametrize("text", RAW)
@pytest.mark.parametrize("normalise", [social_v1, social_v2])
def test_normalisers_are_idempotent(normalise, text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


def test_social_v2_joins_spread_letters_and_reads_8_as_ate() -> None:
    assert social_v1(RAW[4]) == "you are w o r t h l e s s we h8 you all gr8 deals at kmart"
    assert social_v2(RAW[4]) == "you are worthless we hate you all grate deals at kmart"
    assert social_v2("get out you k i k e") == "get out you kike"
    assert social_v2("a b or i a") == "a b or i a"  # two single letters are words, not a spelling
    assert social_v2("h8ful posts in 2018 and 8 mile") == "hateful posts in 2018 and 8 mile"
    for text in RAW:  # v2 reads v1's output: training rows stored in v1 form need no re-cleaning
        assert social_v2(social_v1(text)) == social_v2(text)


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
