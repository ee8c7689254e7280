"""save_pretrained / from_pretrained: exact round trips, no unpickling, clear mismatches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from ensemble import ModelConfig, build_ensemble, from_pretrained, save_pretrained
from ensemble.pretrained import UPDATE_FILE, WEIGHTS_FILE, save_update


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


def _tuned_model(tiny_bert_dir) -> tuple[Any, dict[str, torch.Tensor]]:
    from tests.ensemble.conftest import small_config_json

    config = small_config_json(tiny_bert_dir)
    config["encoders"]["text"]["tuned_layers"] = 1
    model = build_ensemble(ModelConfig.from_json(config), seed=0)
    with torch.no_grad():  # fine-tuned once: the base checkpoint
        for name, p in model.named_parameters():
            if ".layer.1." in name or name.startswith("heads."):
                p.add_(torch.randn_like(p) * 1e-3)
    matrices: dict[str, torch.Tensor] = {
        n: p for n, p in model.named_parameters() if ".layer.1." in n and p.dim() == 2
    }
    return model, matrices


def test_a_heads_checkpoint_finds_an_encoder_path_given_relative_to_the_working_directory(
    tiny_bert_dir, tmp_path, monkeypatch
) -> None:
    """A config naming its text model relative to where training ran (``model_dir:
    tiny-bert``) was saved as written, and the checkpoint then looked for it inside itself:
    it could never be loaded. The path is stored relative to the checkpoint."""
    from tests.ensemble.conftest import small_config_json

    monkeypatch.chdir(tiny_bert_dir.parent)
    config = small_config_json(tiny_bert_dir.name)
    model = build_ensemble(ModelConfig.from_json(config), seed=0)
    save_pretrained(model, tmp_path / "runs" / "heads", weights="heads")
    stored = json.loads((tmp_path / "runs" / "heads" / "config.json").read_text())
    monkeypatch.chdir(tmp_path)  # loaded from elsewhere
    reloaded = from_pretrained(Path("runs") / "heads")
    assert (tmp_path / "runs" / "heads" / stored["encoders"]["text"]["model_dir"]).resolve() == (
        tiny_bert_dir.resolve()
    )
    with torch.no_grad():
        for name, value in model.state_dict().items():
            assert torch.equal(value, reloaded.state_dict()[name]), name


def test_a_submodule_swapped_in_python_is_refused_at_saving_naming_it(
    small_model, tmp_path
) -> None:
    """A head or an encoder replaced on a built model leaves ``model.config`` describing the
    old one: saved, the checkpoint's weights would not fit what its config rebuilds (a raw
    size-mismatch error at loading). Saving refuses it, naming the encoder key and the way."""
    import copy

    from encoders.registry import get_encoder
    from ensemble.heads import LinearHead

    wider = copy.deepcopy(small_model)
    index = [i for i, p in enumerate(wider.config.policies) if "text" in p.heads]
    wider.heads["text"] = LinearHead(wider.encoders["text"].output_dim, index, hidden=64)
    with pytest.raises(
        ValueError, match=r"^the head of encoder 'text' is not the one the config builds"
    ):
        save_pretrained(wider, tmp_path / "a", weights="heads")
    other = copy.deepcopy(small_model)
    other.encoders["image"] = get_encoder("image_quality")
    with pytest.raises(
        ValueError, match=r"^encoder 'image' is a \w+, but the config builds 'mobilenet_v3_small'"
    ):
        save_pretrained(other, tmp_path / "b")
    with pytest.raises(ValueError, match="weights 'head': 'full' or 'heads'"):
        save_pretrained(small_model, tmp_path / "c", weights="head")  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # nothing written
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    save_pretrained(small_model, tmp_path / "d", weights="heads")  # the check builds heads
    assert torch.equal(torch.rand(3), expected)  # without drawing from the caller's RNG


def test_a_config_listing_the_policies_in_another_order_than_the_weights_is_refused(
    small_model, tmp_path
) -> None:
    """A head's output columns follow the policies' order when it was saved; reordered in
    config.json, the policies silently took each other's scores."""
    save_pretrained(small_model, tmp_path, weights="heads")
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    data["policies"] = data["policies"][::-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"the weights score the policies \['offensive_language'"):
        from_pretrained(tmp_path)
    data["policies"] = data["policies"][::-1]  # restored: loads again
    path.write_text(json.dumps(data))
    assert from_pretrained(tmp_path).config.policy_names == small_model.config.policy_names


def _continued(
    checkpoint: Path, matrices: Iterable[str], rank: int, heads: bool = True
) -> tuple[Any, dict[str, torch.nn.Parameter], dict[str, torch.Tensor]]:
    """``checkpoint`` trained on: a rank-``rank`` change per matrix, new heads if ``heads``."""
    continued = from_pretrained(checkpoint)
    params = dict(continued.named_parameters())
    changes = {}
    with torch.no_grad():
        for name in matrices:
            out_dim, in_dim = params[name].shape
            changes[name] = torch.randn(out_dim, rank) @ torch.randn(rank, in_dim) * 1e-3
            params[name].add_(changes[name])
        for p in continued.heads.parameters() if heads else ():
            p.add_(0.01)
    return continued, params, changes


def test_update_stores_base_file_unchanged_and_a_low_rank_change(tiny_bert_dir, tmp_path) -> None:
    model, matrices = _tuned_model(tiny_bert_dir)
    save_pretrained(model, tmp_path / "base", weights="heads", dtype="int7-delta")
    continued, params, changes = _continued(tmp_path / "base", matrices, rank=2)
    save_update(continued, tmp_path / "next", tmp_path / "base", rank=2)
    base_bytes = (tmp_path / "base" / WEIGHTS_FILE).read_bytes()
    assert (tmp_path / "next" / WEIGHTS_FILE).read_bytes() == base_bytes
    update = load_file(str(tmp_path / "next" / UPDATE_FILE))
    assert {update[n + ".update_a"].shape[1] for n in matrices} == {2}
    loaded = from_pretrained(tmp_path / "next")
    got = dict(loaded.named_parameters())
    for name in matrices:  # a rank-2 change is kept up to float16 rounding
        assert torch.allclose(got[name], params[name], atol=1e-5)
        assert not torch.allclose(got[name], params[name] - changes[name], atol=1e-5)
    for name, p in continued.heads.named_parameters():
        assert torch.equal(got["heads." + name], p.half().float())
    inputs = continued.example_inputs(2)
    assert torch.allclose(loaded(*inputs)[0], continued(*inputs)[0], atol=1e-3)


def test_an_update_of_an_updated_checkpoint_keeps_its_updates_and_adds_its_own(
    tiny_bert_dir, tmp_path
) -> None:
    model, matrices = _tuned_model(tiny_bert_dir)
    save_pretrained(model, tmp_path / "base", weights="heads", dtype="int7-delta")
    first, _, _ = _continued(tmp_path / "base", matrices, rank=2)
    save_update(first, tmp_path / "next", tmp_path / "base", rank=2)
    second, params, changes = _continued(tmp_path / "next", matrices, rank=1, heads=False)
    save_update(second, tmp_path / "third", tmp_path / "next", rank=1)
    for file in (WEIGHTS_FILE, UPDATE_FILE):  # the chain so far, byte for byte
        assert (tmp_path / "third" / file).read_bytes() == (tmp_path / "next" / file).read_bytes()
    meta = json.loads((tmp_path / "third" / "config.json").read_text())["checkpoint"]
    assert [(u["file"], u["rank"]) for u in meta["updates"]] == [
        (UPDATE_FILE, 2),
        ("update-2.safetensors", 1),
    ]
    added = load_file(str(tmp_path / "third" / "update-2.safetensors"))
    assert not [key for key in added if key.startswith("heads.")]  # unchanged: not stored again
    got = dict(from_pretrained(tmp_path / "third").named_parameters())
    for name in matrices:
        assert torch.allclose(got[name], params[name], atol=1e-5)
        assert not torch.allclose(got[name], params[name] - changes[name], atol=1e-5)
    save_file({"other": torch.zeros(1)}, str(tmp_path / "third" / UPDATE_FILE))
    with pytest.raises(ValueError, match=r"update-2\.safetensors was made for another update\."):
        from_pretrained(tmp_path / "third")


def test_update_refuses_another_base_file(tiny_bert_dir, tmp_path) -> None:
    model, _ = _tuned_model(tiny_bert_dir)
    save_pretrained(model, tmp_path / "base", weights="heads", dtype="int7-delta")
    save_update(from_pretrained(tmp_path / "base"), tmp_path / "next", tmp_path / "base", rank=1)
    with torch.no_grad():
        next(model.heads.parameters()).add_(1.0)
    save_pretrained(model, tmp_path / "other", weights="heads", dtype="int7-delta")
    (tmp_path / "next" / WEIGHTS_FILE).write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match=r"made for another model\.safetensors"):
        from_pretrained(tmp_path / "next")


def test_update_needs_a_heads_base(small_model, tmp_path) -> None:
    save_pretrained(small_model, tmp_path / "full")
    with pytest.raises(ValueError, match="needs a heads checkpoint"):
        save_update(small_model, tmp_path / "next", tmp_path / "full", rank=1)
