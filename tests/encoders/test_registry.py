"""The encoder registry, swept: every registered encoder's shape, trace, save and load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from encoders import (
    MODALITIES,
    get_encoder,
    get_entry,
    list_encoders,
    register_encoder,
    registry,
)
from encoders.base import Encoder, random_input
from encoders.flash import FlashAnalyzer, FlashPreparer, FlashSettings
from encoders.rules import FlashRule
from encoders.text import HFTextEncoder, TextSettings
from tests.tracing import trace_save_load

ALL = list_encoders()


def test_builtin_families_are_registered() -> None:
    for name in ("minilm", "hf_text", "resnet18", "mobilenet_v3_small", "efficientnet_b0"):
        assert name in ALL
    assert "logmel_cnn" in list_encoders(modality="audio")
    assert {"r3d_18", "frame_pool"} <= set(list_encoders(modality="video"))
    assert set(list_encoders(kind="learned")) <= set(ALL)


def test_duplicate_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("minilm", settings=TextSettings)(HFTextEncoder)


def test_modality_kind_preparer_and_rule_come_from_the_class() -> None:
    flash = get_entry("flash")
    assert (flash.cls, flash.modality, flash.kind) == (FlashAnalyzer, "video", "analyzer")
    assert flash.rule is FlashRule
    assert isinstance(flash.preparer(flash.make_settings()), FlashPreparer)
    assert get_entry("minilm").rule is None
    assert get_entry("resnet50").make_settings().backbone == "resnet50"


def test_an_analyzer_without_a_rule_head_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Ruleless(Encoder):
        modality = "video"
        kind = "analyzer"

    with pytest.raises(ValueError, match="Ruleless has no rule head"):
        register_encoder("test_ruleless", settings=FlashSettings)(Ruleless)
    assert "test_ruleless" not in list_encoders()


def test_unknown_name_lists_registered() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        get_entry("no-such-encoder")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="accepted"):
        get_encoder("resnet18", bogus=1)


def test_a_name_fixes_the_backbone_it_names() -> None:
    """`{type: resnet18, backbone: resnet50}` built a ResNet-50 under the name resnet18; a
    name whose family only starts from a backbone (frame_pool) still takes another."""
    with pytest.raises(
        ValueError, match=r"encoder 'resnet18' is backbone 'resnet18' \(given 'resnet50'\)"
    ):
        get_entry("resnet18").make_settings(backbone="resnet50")
    assert get_entry("resnet18").make_settings(backbone="resnet18").backbone == "resnet18"
    assert get_entry("frame_pool").make_settings(backbone="resnet50").backbone == "resnet50"


def test_a_new_entry_registers_and_lists(tiny_bert_dir, monkeypatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @dataclass(frozen=True)
    class Tiny(TextSettings):
        pass

    @register_encoder(
        "test_tiny_text",
        settings=Tiny,
        defaults={"model_dir": str(tiny_bert_dir), "max_length": 16},
    )
    class TinyText(HFTextEncoder):
        pass

    assert "test_tiny_text" in list_encoders(modality="text")
    assert get_encoder("test_tiny_text").output_dim == 32


# The quick sweep's settings per modality and kind: every registered encoder at a small size
# (the architecture, operators and tracing are the same); full size is swept under ``slow``.
SMALL: dict[tuple[str, str], dict[str, Any]] = {
    ("text", "learned"): {"max_length": 16},
    ("image", "learned"): {"image_size": 64},
    ("audio", "learned"): {"clip_seconds": 1.0, "channels": (8, 16)},
    ("video", "learned"): {"num_frames": 4, "frame_size": 32},
    ("video", "analyzer"): {"max_seconds": 1.0, "analysis_height": 90},
    ("audio", "analyzer"): {"max_seconds": 1.0},
    ("image", "analyzer"): {"analysis_size": 128},
}
SWEEP = [
    *(pytest.param(name, True, id=f"{name}-small") for name in ALL),
    *(pytest.param(name, False, id=f"{name}-full", marks=pytest.mark.slow) for name in ALL),
]


@pytest.mark.parametrize(("name", "small"), SWEEP)
def test_encoder_traces_and_reloads(name: str, small: bool) -> None:
    entry = get_entry(name)
    settings = SMALL[entry.modality, entry.kind] if small else {}
    encoder = get_encoder(name, **settings).eval()
    assert encoder.modality == entry.modality in MODALITIES
    assert encoder.kind == entry.kind
    if encoder.kind == "analyzer":
        assert len(encoder.measurement_names) == encoder.output_dim
    torch.manual_seed(0)
    with torch.no_grad():
        loaded = trace_save_load(encoder, encoder.example_inputs(2))
        # the fewest rows collation gives (an empty pack where no ad has the modality) run too
        for batch in sorted({encoder.min_rows, 1, 3}):
            inputs = encoder.example_inputs(batch)
            eager = encoder(*inputs)
            assert eager.shape == (batch, encoder.output_dim)
            assert torch.isfinite(eager).all()
            torch.testing.assert_close(loaded(*inputs), eager, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_placeholder_matches_input_spec(name: str) -> None:
    entry = get_entry(name)
    settings = entry.make_settings()
    placeholder = entry.preparer(settings).placeholder()
    encoder = get_encoder(name)
    assert list(placeholder) == [s.name for s in encoder.input_spec]
    # channel-bucketed inputs (loudness): the spec is the widest, the placeholder the first
    widths = getattr(settings, "channel_widths", None)
    for spec in encoder.input_spec:
        shape = tuple(placeholder[spec.name].shape)
        expected = spec.shape
        if widths is not None and spec.shape and spec.shape[-1] == widths[-1]:
            expected = (*spec.shape[:-1], widths[0])
        if spec.buckets:  # a length-bucketed input is at most its longest
            assert shape[1:] == expected[1:]
            assert shape[0] <= spec.shape[0] == spec.buckets[-1]
        else:
            assert shape == expected
        assert placeholder[spec.name].dtype == spec.dtype
        assert random_input(spec, 2).shape == (2, *spec.shape)
