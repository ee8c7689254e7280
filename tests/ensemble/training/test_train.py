"""Training: masked loss, class weights, the served score, cache, thresholds, early stopping,
fine-tuning and the train / evaluate commands."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from encoders.base import MODALITIES, InputSpec
from encoders.text import HFTextEncoder
from ensemble import build_ensemble, from_pretrained, save_pretrained
from ensemble.batch import AdPreparer
from ensemble.cli import main
from ensemble.config import Policy
from ensemble.fusion import mask_absent
from ensemble.model import AdPolicyEnsemble
from ensemble.training.evaluate import choose_threshold, score_ads
from ensemble.training.features import embed, trim_padding
from ensemble.training.train import TrainSettings, class_weights, masked_bce, train
from ensemble.training.trainable import FusedLogits
from tests.ensemble.training.train_data import keyword_ads, text_config, write_jsonl

FAST = TrainSettings(epochs=6, batch_size=16, lr=3e-3, weight_decay=0.0, progress=False)


@pytest.fixture(scope="module")
def train_ads() -> list[dict[str, Any]]:
    return keyword_ads(96, seed=1)


@pytest.fixture(scope="module")
def val_ads() -> list[dict[str, Any]]:
    return keyword_ads(40, seed=2, prefix="val")


def test_masked_loss_ignores_unknown_labels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 2, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.25, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    loss = masked_bce(logits, targets, mask, torch.ones(2))
    flipped = torch.where(mask.bool(), targets, 1 - targets)  # unknown labels changed
    assert torch.equal(loss, masked_bce(logits, flipped, mask, torch.ones(2)))
    known = mask.bool()
    expected = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)  # mean over known terms
    loss.backward()
    assert logits.grad is not None
    assert (logits.grad[~known] == 0).all()
    assert (logits.grad[known] != 0).all()


def test_class_weights_schemes() -> None:
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = torch.ones(4, 3)
    mask[3, 1] = 0  # the only positive of policy 1 is unknown
    assert class_weights(targets, mask, "none").tolist() == [1.0, 1.0, 1.0]
    assert class_weights(targets, mask, "balanced").tolist() == [3.0, 1.0, 1.0]
    assert class_weights(targets, mask, "sqrt")[0].item() == pytest.approx(3**0.5)


def _dense_inputs(model, presence) -> tuple[dict[str, list], tuple]:
    """The view's inputs by key and the graph's (dense: every ad has a row everywhere)."""
    count = len(model.modalities)
    inputs = model.example_inputs(presence.shape[0])[:-count]
    index = tuple(
        torch.arange(1, presence.shape[0] + 1) * presence[:, MODALITIES.index(m)].long()
        for m in model.modalities
    )
    named, position = {}, 0
    for key in model.keys:
        size = len(model.encoders[key].input_spec)
        named[key] = list(inputs[position : position + size])
        position += size
    return named, (*inputs, *index)


PRESENCE = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


def test_fused_logits_are_the_logits_of_the_served_scores(small_model) -> None:
    view = FusedLogits(small_model, live=small_model.keys)
    named, graph_inputs = _dense_inputs(small_model, PRESENCE)
    with torch.no_grad():
        logits, applicable = view(named, PRESENCE)
        served = small_model(*graph_inputs).scores
    assert applicable.tolist() == [[True, True, True], [False, True, True], [True, True, False]]
    assert torch.allclose(torch.sigmoid(logits)[applicable], served[applicable], atol=1e-6)
    assert (served[~applicable] == 0).all()


class ScaledMaxFusion(nn.Module):
    """A fusion with parameters: a learned scale and bias per modality, then the max."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(len(MODALITIES), 1))
        self.bias = nn.Parameter(torch.tensor([[0.5], [-0.25], [0.0], [0.75]]))

    def forward(self, modality_logits, presence):
        masked = mask_absent(modality_logits * self.scale + self.bias, presence)
        return masked.amax(dim=1), masked


def test_a_fusion_with_parameters_is_what_training_fuses_and_trains(small_model) -> None:
    fusion = ScaledMaxFusion()
    model = AdPolicyEnsemble(
        small_model.config, dict(small_model.encoders), dict(small_model.heads), fusion
    ).eval()
    view = FusedLogits(model)
    assert any(p is fusion.bias for p in view.parameters())
    named, graph_inputs = _dense_inputs(model, PRESENCE)
    learned = [k for k in model.keys if model.encoders[k].kind == "learned"]
    cached = {k: [model.encoders[k](*named[k])] for k in learned}
    logits, applicable = view(cached, PRESENCE)
    with torch.no_grad():
        served = model(*graph_inputs).scores
        plain = small_model(*graph_inputs).scores
    assert torch.allclose(torch.sigmoid(logits)[applicable], served[applicable], atol=1e-6)
    assert not torch.allclose(served[applicable], plain[applicable], atol=1e-3)
    logits[applicable].sum().backward()
    grad = fusion.bias.grad
    assert grad is not None
    assert grad.abs().sum() > 0


def test_fine_tuning_names_learned_encoders_only(small_model) -> None:
    with pytest.raises(ValueError, match="cannot fine-tune"):
        FusedLogits(small_model, live=["nope"])


def test_cache_reuses_embeddings_and_keys_on_content(tiny_bert_dir, tmp_path) -> None:
    config = text_config(tiny_bert_dir)
    model = build_ensemble(config)
    ads = keyword_ads(20, seed=3)
    first = embed(model, ads, cache_dir=tmp_path, batch_size=4, progress=False)
    (cached,) = tmp_path.iterdir()
    stamp = cached.stat().st_mtime_ns
    again = embed(model, ads, cache_dir=tmp_path, progress=False)
    assert cached.stat().st_mtime_ns == stamp  # read, not rewritten
    assert torch.equal(first.embeddings["text"], again.embeddings["text"])
    assert first.presence[:, 0].all()
    # the same embeddings as the encoder at full length (padding trimmed per batch)
    encoder = model.encoders["text"]
    preparer = AdPreparer(config)
    batch = preparer.collate([preparer.prepare(a) for a in ads])
    with torch.no_grad():
        full = encoder(*batch.inputs[:2])
    assert torch.allclose(first.embeddings["text"], full, atol=1e-5)
    # another text, or other weights: another key
    embed(model, [*ads[:-1], {**ads[-1], "text": "changed"}], cache_dir=tmp_path, progress=False)
    with torch.no_grad():
        next(encoder.parameters()).add_(0.01)
    embed(model, ads, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.iterdir())) == 3


def test_trim_padding_cuts_after_the_last_attended_column() -> None:
    ids = torch.arange(12).reshape(2, 6)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    spec = (
        InputSpec("input_ids", (6,), torch.int64),
        InputSpec("attention_mask", (6,), torch.int64),
    )
    cut = trim_padding([ids, mask], spec)
    assert [tuple(t.shape) for t in cut] == [(2, 3), (2, 3)]
    assert torch.equal(cut[0], ids[:, :3])


def test_training_masks_unlabelled_policies_and_sets_thresholds(
    tiny_bert_dir, train_ads, val_ads, tmp_path
) -> None:
    config = text_config(tiny_bert_dir)
    extra = Policy("adult", ("text",), threshold=0.42)  # no ad is labelled for it
    model = build_ensemble(config.with_policies((*config.policies, extra)), seed=0)
    head = [m for m in model.heads["text"].modules() if isinstance(m, torch.nn.Linear)][-1]
    before = head.weight.detach().clone()
    result = train(model, train_ads, val_ads, FAST, cache_dir=tmp_path)
    assert result.model.config is not None
    policies = {p.name: p for p in result.model.config.policies}
    assert policies["adult"] == extra  # untouched: still untrained, its threshold kept
    assert torch.equal(head.weight[2], before[2])  # no gradient reached its output row
    assert not torch.equal(head.weight[:2], before[:2])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # thresholds: the rule applied to the validation scores of the served forward
    scores, _ = score_ads(result.model, val_ads, progress=False)
    for j, name in enumerate(["offensive_language", "hate_speech"]):
        labels = np.array([ad["labels"][name] for ad in val_ads])
        threshold, f1 = choose_threshold(scores[:, j], labels)
        assert policies[name].calibrated
        assert policies[name].threshold == pytest.approx(threshold, abs=1e-5)
        assert result.policies[name]["val_f1"] == pytest.approx(f1, abs=1e-6)


def test_a_policy_whose_training_labels_are_all_one_class_is_warned_of(
    tiny_bert_dir, train_ads, val_ads, tmp_path, caplog
) -> None:
    """Labels with no positive teach a head nothing but "no"; training went on silently and
    the policy was shown as trained. The run still trains, and says so."""
    no_hate = [{**ad, "labels": {**ad["labels"], "hate_speech": 0}} for ad in train_ads]
    model = build_ensemble(text_config(tiny_bert_dir), seed=0)
    with caplog.at_level(logging.WARNING, logger="ensemble.training.train"):
        train(model, no_hate, val_ads, FAST, cache_dir=tmp_path)
    warned = [r.getMessage() for r in caplog.records if "training labels" in r.getMessage()]
    assert warned == [f"hate_speech: no positive among its {len(train_ads)} training labels"]


def test_early_stopping_keeps_the_best_epoch(tiny_bert_dir, train_ads, val_ads, tmp_path) -> None:
    settings = dataclasses.replace(FAST, epochs=40, patience=2, lr=0.05)
    result = train(
        build_ensemble(text_config(tiny_bert_dir)), train_ads, val_ads, settings, cache_dir=tmp_path
    )
    history = [h["val_score"] for h in result.history]
    assert len(history) < 40
    assert len(history) - result.best_epoch == 2  # stopped after `patience` worse epochs
    assert result.val_score == max(history) == history[result.best_epoch - 1]
    again = train(
        build_ensemble(text_config(tiny_bert_dir)), train_ads, val_ads, settings, cache_dir=tmp_path
    )
    assert [h["val_score"] for h in again.history] == history  # seeded: reproducible


def test_fine_tuning_changes_the_encoder_and_freezing_does_not(
    tiny_bert_dir, train_ads, val_ads, tmp_path
) -> None:
    frozen = build_ensemble(text_config(tiny_bert_dir))
    original = {k: v.clone() for k, v in frozen.encoders.state_dict().items()}
    train(frozen, train_ads, val_ads, dataclasses.replace(FAST, epochs=2))
    assert all(torch.equal(v, original[k]) for k, v in frozen.encoders.state_dict().items())
    tuned = build_ensemble(text_config(tiny_bert_dir))
    settings = dataclasses.replace(FAST, epochs=2, unfreeze=("text",), encoder_lr=1e-3)
    result = train(tuned, train_ads, val_ads, settings)
    changed = [k for k, v in tuned.encoders.state_dict().items() if not torch.equal(v, original[k])]
    assert any("encoder.layer" in k for k in changed)
    # a full checkpoint holds the fine-tuned encoder
    save_pretrained(result.model, tmp_path / "ckpt")
    loaded = from_pretrained(tmp_path / "ckpt")
    ads = val_ads[:8]
    assert np.allclose(
        score_ads(loaded, ads, progress=False)[0],
        score_ads(tuned, ads, progress=False)[0],
        atol=1e-6,
    )


def test_lexicon_trains_with_the_heads_over_cached_embeddings(
    tiny_bert_dir, train_ads, val_ads, tmp_path
) -> None:
    config = text_config(tiny_bert_dir, lexicon_dim=8)
    model = build_ensemble(config)
    encoder = model.encoders["text"]
    assert isinstance(encoder, HFTextEncoder)
    assert encoder.lexicon is not None
    transformer = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    table = encoder.lexicon.table.detach().clone()
    result = train(model, train_ads, val_ads, FAST, cache_dir=tmp_path / "cache")
    assert all(torch.equal(v, transformer[k]) for k, v in encoder.model.state_dict().items())
    changed = (encoder.lexicon.table != table).any(dim=1)
    preparer = AdPreparer(config)
    prepared = [preparer.prepare(ad).tensors for ad in train_ads]
    seen = torch.cat([t["text.input_ids"][t["text.attention_mask"].bool()] for t in prepared])
    seen = seen.unique()
    unseen = torch.ones(len(changed), dtype=torch.bool)
    unseen[seen] = False
    assert changed[seen].all()  # every wordpiece of the training texts learned
    assert not encoder.lexicon.table[unseen].any()  # the others still zero: they add nothing
    # the cache holds the frozen part only, keyed without the lexicon: reused as it is
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").iterdir()}
    assert len(stamps) == 2  # train, val
    features = embed(model, train_ads, cache_dir=tmp_path / "cache", progress=False)
    other = build_ensemble(text_config(tiny_bert_dir, lexicon_dim=4))  # another lexicon
    embed(other, train_ads, cache_dir=tmp_path / "cache", progress=False)
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").iterdir()} == stamps
    assert features.embeddings["text"].shape == (len(train_ads), encoder.frozen_dim)
    # a heads checkpoint carries the lexicon and scores as the trained model does
    save_pretrained(result.model, tmp_path / "ckpt", weights="heads")
    stored = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert "encoders.text.lexicon.table" in stored
    assert not any(k.startswith("encoders.text.model.") for k in stored)
    loaded = from_pretrained(tmp_path / "ckpt")
    assert np.allclose(
        score_ads(loaded, val_ads, progress=False)[0],
        score_ads(result.model, val_ads, progress=False)[0],
        atol=1e-6,
    )


def test_train_and_evaluate_commands(tiny_bert_dir, train_ads, val_ads, tmp_path, capsys) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(text_config(tiny_bert_dir).to_json()))
    train_file = write_jsonl(train_ads, tmp_path / "train.jsonl")
    val_file = write_jsonl(val_ads, tmp_path / "val.jsonl")
    test_file = write_jsonl(keyword_ads(30, seed=9, prefix="test"), tmp_path / "test.jsonl")
    out = tmp_path / "ckpt"
    common = ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    args = ["train", "--config", str(config), "--data", str(train_file), "--val", str(val_file)]
    args += ["--out", str(out), "--heads-only", "--epochs", "3", "--head-hidden", "8", *common]
    assert main(args) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["head_hidden"] == 8
    assert saved["checkpoint"]["weights"] == "heads"
    assert saved["checkpoint"]["training"]["args"]["epochs"] == 3
    assert all(p["calibrated"] for p in saved["policies"])
    report = tmp_path / "report"
    args = ["evaluate", str(out), "--data", str(test_file), "--report", str(report)]
    assert (
        main([*args, "--class-rule", "davidson", "--record", "--format", "html", "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "hatesonar" in printed
    assert (report / "report.html").is_file()
    recorded = json.loads((out / "evaluation.json").read_text())
    assert recorded["metrics"]["n"] == 30
    assert len(recorded["sample"]["ids"]) == 30  # fewer ads than the sample size: all of them
    assert (
        recorded["sample"]["metrics"]["classes"]["accuracy"]
        == recorded["metrics"]["classes"]["accuracy"]
    )


@pytest.mark.parametrize(
    "option", [["--config", "full"], ["--head-hidden", "64"], ["--head-dropout", "0.3"]]
)
def test_init_refuses_options_its_checkpoint_config_would_override(tmp_path, option) -> None:
    """--init trains the checkpoint's own config: an explicit --config or head size was
    silently ignored, and the user believed they had trained a 64-wide head."""
    args = ["train", "--init", str(tmp_path / "ckpt"), "--data", "t.jsonl", "--val", "v.jsonl"]
    with pytest.raises(
        SystemExit, match=rf"--init continues .* with its own config: {option[0]} would be ignored"
    ):
        main([*args, "--out", str(tmp_path / "out"), *option])


def test_heads_only_refuses_fine_tuned_encoders(tmp_path) -> None:
    """A heads checkpoint would drop a wholly fine-tuned encoder; the default's text encoder
    tunes only top layers (``tuned_layers``), which a heads checkpoint stores."""
    from ensemble.config import CONFIG_DIR

    config = tmp_path / "whole.yaml"
    lines = (CONFIG_DIR / "default.yaml").read_text().splitlines()
    config.write_text("\n".join(line for line in lines if "tuned_layers" not in line) + "\n")
    args = ["train", "--config", str(config), "--data", "x", "--val", "y", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="heads-only"):
        main([*args, "--heads-only", "--unfreeze", "text"])


def test_linear_schedule_falls_to_zero_over_the_epochs(tiny_bert_dir, train_ads, val_ads) -> None:
    model = build_ensemble(text_config(tiny_bert_dir))
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def record(self, *args, **kwargs):  # the rate each optimizer step is taken with
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    settings = dataclasses.replace(FAST, epochs=2, patience=5, schedule="linear")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", record)
        train(model, train_ads, val_ads, settings)
    steps = 2 * -(-len(train_ads) // FAST.batch_size)
    assert len(seen) == steps
    assert seen[0] == pytest.approx(FAST.lr)
    assert np.allclose(np.diff(seen), -FAST.lr / steps)
    assert seen[-1] == pytest.approx(FAST.lr / steps)
    with pytest.raises(ValueError, match="schedule"):
        TrainSettings(schedule="cosine")


def test_init_continues_from_a_checkpoint_and_drops_its_stale_calibration(
    tiny_bert_dir, train_ads, val_ads, tmp_path
) -> None:
    from ensemble.decisions import Band, Calibration

    first = train(build_ensemble(text_config(tiny_bert_dir)), train_ads, val_ads, FAST).model
    assert first.config is not None
    fitted = tuple(
        dataclasses.replace(
            p, calibration=Calibration("temperature", 2.0), band=Band(0.1, 0.9, "learn_then_test")
        )
        for p in first.config.policies
    )
    first.config = first.config.with_policies(fitted)
    save_pretrained(first, tmp_path / "first", weights="heads")
    train_file = write_jsonl(train_ads, tmp_path / "train.jsonl")
    val_file = write_jsonl(val_ads, tmp_path / "val.jsonl")
    out = tmp_path / "second"
    args = ["train", "--init", str(tmp_path / "first"), "--data", str(train_file)]
    args += ["--val", str(val_file), "--out", str(out), "--heads-only", "--epochs", "1"]
    args += ["--weights-dtype", "float16"]
    assert main([*args, "--lr", "1e-12", "--no-cache", "--no-progress"]) == 0
    stored = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    second = from_pretrained(out)
    assert all(p.dtype == torch.float32 for p in second.parameters())  # loaded back in fp32
    # started from the checkpoint's weights: a step too small to move them scores as the
    # checkpoint does once its weights are rounded as they are stored
    rounded = from_pretrained(tmp_path / "first")
    kept = [p for name, p in rounded.named_parameters() if name in stored]
    assert kept
    with torch.no_grad():
        for p in kept:
            p.copy_(p.half().float())
    assert np.allclose(
        score_ads(second, val_ads, progress=False)[0],
        score_ads(rounded, val_ads, progress=False)[0],
        atol=1e-6,
    )
    assert second.config is not None
    for policy in second.config.policies:
        assert policy.calibrated
        assert policy.calibration is None  # refit by `calibrate`
        assert policy.band is None
    saved = json.loads((out / "config.json").read_text())
    assert saved["checkpoint"]["training"]["args"]["init"] == str(tmp_path / "first")
    assert saved["checkpoint"]["dtype"] == "float16"
    parity = saved["checkpoint"]["training"]["storage_parity"]
    assert parity["n"] == len(val_ads)
    assert 0 < parity["max_abs_diff"] < 1e-2  # rounded, and only just


def test_int8_delta_storage_is_refused_before_training_without_heads_only(tmp_path) -> None:
    args = ["train", "--data", str(tmp_path / "none.jsonl"), "--val", str(tmp_path / "none.jsonl")]
    with pytest.raises(SystemExit, match="needs --heads-only"):
        main([*args, "--out", str(tmp_path / "out"), "--weights-dtype", "int8-delta"])
    assert not (tmp_path / "out").exists()


def test_update_rank_stores_a_continued_model_as_an_update_of_its_init(
    tiny_bert_dir, train_ads, val_ads, tmp_path
) -> None:
    config = tmp_path / "config.json"
    data = text_config(tiny_bert_dir).to_json()
    data["encoders"]["text"]["tuned_layers"] = 1
    config.write_text(json.dumps(data))
    train_file = write_jsonl(train_ads, tmp_path / "train.jsonl")
    val_file = write_jsonl(val_ads, tmp_path / "val.jsonl")
    common = ["--data", str(train_file), "--val", str(val_file), "--heads-only", "--epochs", "1"]
    common += ["--unfreeze", "text", "--encoder-lr", "1e-3", "--no-cache", "--no-progress"]
    base, out = tmp_path / "base", tmp_path / "next"
    args = ["train", "--config", str(config), "--out", str(base), "--weights-dtype", "int7-delta"]
    assert main([*args, *common]) == 0
    with pytest.raises(SystemExit, match="needs --init"):
        main(["train", "--config", str(config), "--out", str(out), "--update-rank", "2", *common])
    assert (
        main(["train", "--init", str(base), "--out", str(out), "--update-rank", "2", *common]) == 0
    )
    assert (out / "model.safetensors").read_bytes() == (base / "model.safetensors").read_bytes()
    saved = json.loads((out / "config.json").read_text())
    assert [u["rank"] for u in saved["checkpoint"]["updates"]] == [2]
    assert saved["checkpoint"]["dtype"] == "int7-delta"
    parity = saved["checkpoint"]["training"]["storage_parity"]
    assert parity["n"] == len(val_ads)
    continued = from_pretrained(out).state_dict()
    started = from_pretrained(base).state_dict()
    tuned = [
        k.removesuffix(".update_a")
        for k in load_file(str(out / "update.safetensors"))
        if k.endswith(".update_a")
    ]
    assert tuned
    assert all(not torch.equal(continued[k], started[k]) for k in tuned)
    # continued in place: one more update on the chain, however often the CLI writes
    assert (
        main(["train", "--init", str(out), "--out", str(out), "--update-rank", "1", *common]) == 0
    )
    again = json.loads((out / "config.json").read_text())["checkpoint"]
    assert [u["rank"] for u in again["updates"]] == [2, 1]
    assert again["training"]["storage_parity"]["n"] == len(val_ads)
    assert (out / "update-2.safetensors").is_file()
    assert not (out / "update-3.safetensors").exists()
