"""The parent module: swaps, traces, and scores that do not depend on batch neighbours."""

from __future__ import annotations

import pytest
import torch

from encoders import MODALITIES
from ensemble import ModelConfig, build_ensemble
from ensemble.batch import AdPreparer
from tests.tracing import trace_save_load

from .conftest import small_config_json


def test_output_shapes_and_ranges(small_model) -> None:
    out = small_model(*small_model.example_inputs(3))
    assert out.scores.shape == (3, 3)
    assert out.modality_scores.shape == (3, len(MODALITIES), 3)
    assert out.measurements.shape == (3, 0)
    assert ((out.scores >= 0) & (out.scores <= 1)).all()
    # offensive_language is scored by text only: no other modality contributes to it
    assert (out.modality_scores[:, 1:, 0] == 0).all()


def test_swapped_encoders_score_and_trace(tiny_bert_dir, small_model) -> None:
    """Another text model and image backbone: same code, different modules."""
    data = small_config_json(tiny_bert_dir)
    data["encoders"]["image"] = {"type": "efficientnet_b0", "image_size": 64}
    data["encoders"]["text"] = {"type": "minilm", "max_length": 16}
    model = build_ensemble(ModelConfig.from_json(data))
    assert model.encoders["text"].output_dim == 384
    assert model.encoders["image"].output_dim == 1280
    assert small_model.encoders["text"].output_dim == 32
    inputs = model.example_inputs(3)
    with torch.no_grad():
        loaded = trace_save_load(model, inputs)
        torch.testing.assert_close(loaded(*inputs)[0], model(*inputs).scores, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dense", [False, True])
def test_missing_modalities_do_not_change_scores(
    small_model, small_config, sample_ads, sample_media, dense
) -> None:
    """Text-only, image-only, audio-only and all-four ads in ONE batch = each scored alone."""
    preparer = AdPreparer(small_config)
    items = [preparer.prepare(ad, base_dir=sample_media.parent) for ad in sample_ads.values()]
    assert [sum(i.presence) for i in items] == [1, 1, 1, 4]
    together_batch = preparer.collate(items, dense=dense)
    rows = {n: t.shape[0] for n, t in zip(preparer.input_names, together_batch.inputs, strict=True)}
    assert rows["text.input_ids"] == (4 if dense else 2)  # packed: only the ads with text
    assert rows["video.frames"] == (4 if dense else 1)
    with torch.no_grad():
        together = small_model(*together_batch.inputs)
        for row, item in enumerate(items):
            alone = small_model(*preparer.collate([item]).inputs)
            torch.testing.assert_close(together.scores[row], alone.scores[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                together.modality_scores[row], alone.modality_scores[0], atol=1e-5, rtol=0
            )
    absent = ~torch.tensor(items[0].presence)
    assert (together.modality_scores[0, absent] == 0).all()


def test_graph_traced_on_one_mix_runs_any_mix(small_model) -> None:
    """Traced with some modalities missing, run with others missing (or none, or all)."""
    trace_mix = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        loaded = trace_save_load(small_model, small_model.example_inputs(3, trace_mix))
        for mix in ([[1, 0, 0, 0]] * 5, [[0, 0, 0, 1], [0, 1, 0, 0]], [[1, 1, 1, 1]]):
            inputs = small_model.example_inputs(len(mix), torch.tensor(mix, dtype=torch.bool))
            for got, want in zip(loaded(*inputs), small_model(*inputs), strict=True):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_traced_graph_matches_eager_on_real_ads(
    small_model, small_config, sample_ads, sample_media
) -> None:
    preparer = AdPreparer(small_config)
    batch = preparer.collate(
        [preparer.prepare(a, base_dir=sample_media.parent) for a in sample_ads.values()]
    )
    with torch.no_grad():
        loaded = trace_save_load(small_model, batch.inputs)
        for got, want in zip(loaded(*batch.inputs), small_model(*batch.inputs), strict=True):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_preparer_and_model_agree_on_input_order(small_model, small_config) -> None:
    assert AdPreparer(small_config).input_names == small_model.input_names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policies": [{"name": "x", "heads": ["nope"]}]}, "name no encoder"),
        (
            {"policies": [{"name": "x", "heads": ["text"]}, {"name": "x", "heads": ["text"]}]},
            "duplicate",
        ),
        ({"policies": [{"name": "x", "heads": ["text"], "colour": 1}]}, "unknown keys"),
        (
            {"policies": [{"name": "x", "heads": ["text"], "calibrated": "false"}]},
            r"policy 'x': calibrated 'false': true or false",
        ),
        (
            {"policies": [{"name": "x", "heads": ["text"], "threshold": "0.5"}]},
            r"policy 'x': threshold '0.5': a number",
        ),
        (
            {"policies": [{"name": "x", "heads": ["text"], "threshold": 5}]},
            r"policy 'x': threshold 5: a score in \[0, 1\]",
        ),
    ],
)
def test_config_validation(tiny_bert_dir, change, message) -> None:
    data = small_config_json(tiny_bert_dir, **change)
    if "nope" not in str(change):
        data["encoders"] = {"text": data["encoders"]["text"]}
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_json(data)


def test_encoder_without_policy_is_refused(tiny_bert_dir) -> None:
    data = small_config_json(tiny_bert_dir, policies=[{"name": "x", "heads": ["text"]}])
    with pytest.raises(ValueError, match="scores no policy"):
        ModelConfig.from_json(data)
