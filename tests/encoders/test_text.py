"""The text encoder's lexicon: a masked bag of learned wordpiece vectors beside the transformer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from encoders.text import HFTextEncoder, Lexicon, TextPreparer, TextSettings
from tests.tracing import trace_save_load


def _encoder(tiny_bert_dir: Path, lexicon_dim: int = 0) -> HFTextEncoder:
    """The tiny BERT at 8 tokens, in eval mode, with a lexicon of ``lexicon_dim``."""
    settings = TextSettings(model_dir=str(tiny_bert_dir), max_length=8, lexicon_dim=lexicon_dim)
    return HFTextEncoder(settings).eval()


def test_lexicon_appends_the_mean_of_the_attended_wordpieces(tiny_bert_dir) -> None:
    encoder = _encoder(tiny_bert_dir, lexicon_dim=4)
    assert encoder.head_trained == ("lexicon",)
    assert encoder.output_dim == encoder.frozen_dim + 4
    ids = torch.tensor([[101, 7, 9, 102, 0, 0, 0, 0], [101, 5, 102, 0, 0, 0, 0, 0]])
    mask = (ids > 0).long()
    assert encoder.lexicon is not None
    table = encoder.lexicon.table
    assert not table.any()  # untrained: every wordpiece adds nothing
    with torch.no_grad():
        table.normal_()  # as if trained
        out = encoder(ids, mask)
        frozen = encoder.frozen_features(ids, mask)
        # padding tokens count for nothing, whatever their ids
        padded = encoder(torch.where(mask.bool(), ids, torch.full_like(ids, 42)), mask)
    assert torch.equal(out[:, : encoder.frozen_dim], frozen)
    torch.testing.assert_close(out[0, -4:], table[[101, 7, 9, 102]].mean(0))
    torch.testing.assert_close(out[1, -4:], table[[101, 5, 102]].mean(0))
    torch.testing.assert_close(padded, out)


def test_lexicon_traces_and_runs_other_batch_sizes(tiny_bert_dir) -> None:
    encoder = _encoder(tiny_bert_dir, lexicon_dim=4)
    assert encoder.lexicon is not None
    assert encoder.min_rows == 1  # collation gives an empty text pack one placeholder row
    with torch.no_grad():
        encoder.lexicon.table.normal_()
        loaded = trace_save_load(encoder, encoder.example_inputs(2))
        for batch in (1, 3):
            inputs = encoder.example_inputs(batch)
            assert loaded(*inputs).shape == (batch, encoder.output_dim)
            torch.testing.assert_close(loaded(*inputs), encoder(*inputs))


def test_without_a_lexicon_the_embedding_is_the_transformer_alone(tiny_bert_dir) -> None:
    encoder = _encoder(tiny_bert_dir)
    assert encoder.lexicon is None
    assert encoder.head_trained == ()
    assert encoder.output_dim == encoder.frozen_dim
    inputs = encoder.example_inputs(2)
    with torch.no_grad():
        assert torch.equal(encoder(*inputs), encoder.frozen_features(*inputs))


def test_lexicon_dropout_silences_whole_texts_in_training_only() -> None:
    lexicon = Lexicon(50, 4, dropout=0.5)
    with torch.no_grad():
        lexicon.table.normal_()
    ids = torch.randint(1, 50, (200, 6))
    mask = torch.ones_like(ids)
    torch.manual_seed(0)
    silenced = (lexicon.train()(ids, mask) == 0).all(dim=1)
    assert 60 < int(silenced.sum()) < 140  # about half of the texts, each all or nothing
    assert not (lexicon.eval()(ids, mask) == 0).all(dim=1).any()


def test_a_long_text_is_windowed_over_its_whole_length(tiny_bert_dir) -> None:
    """A text that fits is one row, as before; a longer one keeps that first row and adds
    windows of ``window`` tokens, half a window apart, that cover every token."""
    prep = TextPreparer(TextSettings(model_dir=str(tiny_bert_dir), max_length=16, window=8))
    short = prep.prepare_windows("a short text")
    assert len(short) == 1
    assert torch.equal(short[0]["input_ids"], prep.prepare("a short text")["input_ids"])
    text = " ".join(f"word{i}" for i in range(30))
    content = prep.tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = prep.prepare_windows(text)
    assert torch.equal(windows[0]["input_ids"], prep.prepare(text)["input_ids"])
    cls, sep = prep.tokenizer.cls_token_id, prep.tokenizer.sep_token_id
    covered: set[int] = set()
    for k, window in enumerate(windows[1:]):
        ids = window["input_ids"].tolist()
        assert len(ids) <= 8
        assert (ids[0], ids[-1]) == (cls, sep)
        assert window["attention_mask"].tolist() == [1] * len(ids)
        start = 3 * k  # half of the window's 6 text tokens
        assert ids[1:-1] == content[start : start + 6]
        covered.update(range(start, start + len(ids) - 2))
    assert covered == set(range(len(content)))


def test_text_the_model_cannot_read_is_named_in_a_warning(tiny_bert_dir) -> None:
    """Nothing left after normalisation, no Latin letter or digit, or most letters outside
    the Latin script: one warning naming ``text``; English (look-alikes included) none."""
    social = TextPreparer(TextSettings(model_dir=str(tiny_bert_dir), normalizer="social-v3"))
    raw = TextPreparer(TextSettings(model_dir=str(tiny_bert_dir)))
    for text in ("\U0001f600\U0001f389", "全新手机优惠", "Большая распродажа", "www.example.com/x"):
        (warning,) = social.warnings(text)
        assert warning.startswith("text: nothing of it survives normalisation (social-v3")
        assert warning.endswith("the text policies scored an empty text")
    for text in ("\U0001f600\U0001f389", "Большая распродажа"):  # kept as they are, unread
        assert raw.warnings(text) == [
            "text: no Latin letter or digit in it, and the text model reads English only; "
            "its text scores carry no reading of it"
        ]
    mostly = "Купите новый iPhone сегодня"
    expected = (
        "text: 18 of its 24 letters are not in the Latin script and the text model reads "
        "English only; its text scores rest on the other 6"
    )
    assert social.warnings(mostly) == raw.warnings(mostly) == [expected]
    for english in ("Summer sale on shoes, скидка", "I h\u0430t\u0435 \u0430ll of you", "50%"):
        assert social.warnings(english) == raw.warnings(english) == []


@pytest.mark.parametrize("length", [0, 513])
def test_max_length_must_fit_the_models_positions(tiny_bert_dir, length) -> None:
    """A max_length past the model's position embeddings trained and exported, then failed
    every long ad with an internal error (a tensor of 513 positions against 512)."""
    settings = TextSettings(model_dir=str(tiny_bert_dir), max_length=length, buckets=(16,))
    with pytest.raises(ValueError, match=rf"^max_length {length}: between 1 and the model's 512"):
        HFTextEncoder(settings)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"window": 2}, r"^window 2: at least 4 tokens"),
        ({"normalizer": "social-v9"}, r"^text normaliser 'social-v9': one of \['none'"),
    ],
)
def test_text_settings_the_preparation_cannot_use_are_refused_when_read(setting, message) -> None:
    """They built and trained, then failed at the first ad's preparation."""
    with pytest.raises(ValueError, match=message):
        TextSettings(**setting)


def test_roberta_positions_start_after_the_padding_index(tmp_path) -> None:
    """RoBERTa-family models count 2 more positions than they can hold (ids start after the
    padding index): 514 is 512 tokens."""
    from transformers import RobertaConfig

    RobertaConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=34, pad_token_id=1,
    ).save_pretrained(tmp_path)  # fmt: skip
    settings = TextSettings(model_dir=str(tmp_path), pretrained=False, buckets=(16,))
    HFTextEncoder(dataclasses.replace(settings, max_length=32))
    with pytest.raises(ValueError, match=r"^max_length 33: between 1 and the model's 32 positions"):
        HFTextEncoder(dataclasses.replace(settings, max_length=33))
