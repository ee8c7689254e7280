"""The text encoder's lexicon: a masked bag of learned wordpiece vectors beside the transformer."""

from __future__ import annotations

import torch

from encoders.text import HFTextEncoder, TextSettings
from tests.tracing import trace_save_load


def test_lexicon_appends_the_mean_of_the_attended_wordpieces(tiny_bert_dir) -> None:
    encoder = HFTextEncoder(
        TextSettings(model_dir=str(tiny_bert_dir), max_length=8, lexicon_dim=4)
    ).eval()
    assert encoder.head_trained == ("lexicon",)
    assert encoder.output_dim == encoder.frozen_dim + 4
    ids = torch.tensor([[101, 7, 9, 102, 0, 0, 0, 0], [101, 5, 102, 0, 0, 0, 0, 0]])
    mask = (ids > 0).long()
    assert encoder.lexicon is not None
    table = encoder.lexicon.table
    with torch.no_grad():
        out = encoder(ids, mask)
        frozen = encoder.frozen_features(ids, mask)
        # padding tokens count for nothing, whatever their ids
        padded = encoder(torch.where(mask.bool(), ids, torch.full_like(ids, 42)), mask)
    assert torch.equal(out[:, : encoder.frozen_dim], frozen)
    torch.testing.assert_close(out[0, -4:], table[[101, 7, 9, 102]].mean(0))
    torch.testing.assert_close(out[1, -4:], table[[101, 5, 102]].mean(0))
    torch.testing.assert_close(padded, out)


def test_lexicon_traces_and_runs_an_empty_batch(tiny_bert_dir) -> None:
    encoder = HFTextEncoder(
        TextSettings(model_dir=str(tiny_bert_dir), max_length=8, lexicon_dim=4)
    ).eval()
    with torch.no_grad():
        loaded = trace_save_load(encoder, encoder.example_inputs(2))
        for batch in (0, 3):
            inputs = encoder.example_inputs(batch)
            assert loaded(*inputs).shape == (batch, encoder.output_dim)
            torch.testing.assert_close(loaded(*inputs), encoder(*inputs))


def test_without_a_lexicon_the_embedding_is_the_transformer_alone(tiny_bert_dir) -> None:
    encoder = HFTextEncoder(TextSettings(model_dir=str(tiny_bert_dir), max_length=8)).eval()
    assert encoder.lexicon is None
    assert encoder.head_trained == ()
    assert encoder.output_dim == encoder.frozen_dim
    inputs = encoder.example_inputs(2)
    with torch.no_grad():
        assert torch.equal(encoder(*inputs), encoder.frozen_features(*inputs))
