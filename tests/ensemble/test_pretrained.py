"""save_pretrained / from_pretrained: exact round trips, no unpickling, clear mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ensemble import ModelConfig, build_ensemble, from_pretrained, save_pretrained
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


@pytest.mark.parametrize(("dtype", "steps"), [("int8-delta", 127), ("int7-delta", 63)])
def test_int8_delta_stores_tuned_matrices_as_steps_from_the_base(
    tiny_bert_dir, tmp_path, dtype: str, steps: int
) -> None:
    from tests.ensemble.conftest import small_config_json

    config = small_config_json(tiny_bert_dir)
    config["encoders"]["text"]["tuned_layers"] = 1
    model = build_ensemble(ModelConfig.from_json(config), seed=0)
    tuned = {
        n: p
        for n, p in model.named_parameters()
        if ".layer.1." in n and n.startswith("encoders.text.")
    }
    assert tuned
    with torch.no_grad():  # fine-tuning: small moves away from the base weights
        for p in tuned.values():
            p.add_(torch.randn_like(p) * 1e-3)
    save_pretrained(model, tmp_path / "i8", weights="heads", dtype=dtype)
    save_pretrained(model, tmp_path / "f16", weights="heads", dtype=torch.float16)
    stored = load_file(str(tmp_path / "i8" / WEIGHTS_FILE))
    matrices = [n for n, p in tuned.items() if p.dim() == 2]
    assert matrices
    assert all(stored[n].dtype == torch.int8 for n in matrices)
    assert max(int(stored[n].abs().max()) for n in matrices) == steps
    assert {t.dtype for n, t in stored.items() if n not in matrices} == {
        torch.float16,
        torch.float32,
    }
    size = (tmp_path / "i8" / WEIGHTS_FILE).stat().st_size
    assert size < (tmp_path / "f16" / WEIGHTS_FILE).stat().st_size
    loaded = dict(from_pretrained(tmp_path / "i8").named_parameters())
    base = dict(build_ensemble(ModelConfig.from_json(config)).named_parameters())
    for name in matrices:  # within half a step of each row's scale
        delta = (tuned[name] - base[name]).abs().amax(dim=1, keepdim=True)
        assert ((loaded[name] - tuned[name]).abs() <= delta / (2 * steps) + 1e-7).all()
        assert not torch.equal(loaded[name], base[name])
    inputs = model.example_inputs(2)
    want, got = model(*inputs)[0], from_pretrained(tmp_path / "i8")(*inputs)[0]
    assert torch.allclose(got, want, atol=1e-3)


def test_int8_delta_needs_a_heads_checkpoint(small_model, tmp_path) -> None:
    with pytest.raises(ValueError, match="heads checkpoint"):
        save_pretrained(small_model, tmp_path, dtype="int8-delta")
    with pytest.raises(ValueError, match="int8-delta"):
        save_pretrained(small_model, tmp_path, weights="heads", dtype="int4")
