"""save_pretrained / from_pretrained: exact round trips, no unpickling, clear mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ensemble import from_pretrained, save_pretrained
from ensemble.pretrained import WEIGHTS_FILE


@pytest.mark.parametrize("weights", ["full", "heads"])
def test_round_trip_reproduces_scores_exactly(small_model, tmp_path, weights) -> None:
    with torch.no_grad():
        for p in small_model.heads.parameters():
            p.add_(0.01)  # weights that differ from a fresh build's
        save_pretrained(small_model, tmp_path, weights=weights)
        loaded = from_pretrained(tmp_path)
        inputs = small_model.example_inputs(3)
        if weights == "heads":  # encoders come from their settings: reuse the originals'
            loaded.encoders.load_state_dict(small_model.encoders.state_dict())
        for got, want in zip(loaded(*inputs), small_model(*inputs), strict=True):
            assert torch.equal(got, want)


def test_full_checkpoint_is_self_contained(small_model, tmp_path) -> None:
    save_pretrained(small_model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["checkpoint"]["weights"] == "full"
    assert config["encoders"]["text"]["model_dir"] == "encoders/text"
    assert (tmp_path / "encoders" / "text" / "tokenizer.json").is_file()
    assert not (tmp_path / "encoders" / "text" / "model.safetensors").exists()
    assert config["policies"][0]["name"] == "offensive_language"


def test_heads_checkpoint_holds_only_heads(small_model, tmp_path) -> None:
    save_pretrained(small_model, tmp_path, weights="heads")
    keys = load_file(str(tmp_path / WEIGHTS_FILE)).keys()
    assert keys
    assert all(k.startswith("heads.") for k in keys)


def test_mismatched_weights_are_refused(small_model, tmp_path) -> None:
    save_pretrained(small_model, tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_FILE))
    state.pop(next(k for k in state if k.startswith("heads.")))
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(ValueError, match="do not match"):
        from_pretrained(tmp_path)


def test_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        from_pretrained(tmp_path)
