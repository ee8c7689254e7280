"""`adpolicy score` on the sample ads with the embedded default model (the README's demo)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from ensemble.cli import main
from ensemble.cli.score import EXIT_AD_ERRORS
from ensemble.config import CONFIG_DIR
from ensemble.scoring import DEFAULT_DIR


@pytest.mark.slow
def test_demo_scores_the_sample_ads(sample_media, tmp_path, capsys) -> None:
    ads = sample_media.parent / "ads.jsonl"
    out = tmp_path / "results.jsonl"
    command = ["score", str(ads), "-o", str(out), "--no-progress", "--batch-size", "4"]
    assert main(command) == EXIT_AD_ERRORS  # the samples hold two broken ads
    printed = capsys.readouterr().out
    # per ad, the score of every policy it was scored on; * marks a flag
    assert re.search(
        r"profane-text +ok +(block|review) +offensive_language \d\.\d\d\*, hate_speech 0\.\d\d\n",
        printed,
    )
    lines = [json.loads(line) for line in ads.read_text().splitlines() if line.strip()]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in results] == [a["id"] for a in lines]
    errors = {r["id"] for r in results if r["status"] == "error"}
    assert errors == {"broken-image", "missing-file"}
    config = json.loads((DEFAULT_DIR / "config.json").read_text())
    for policy in config["policies"]:
        assert policy["name"] in printed
    for r in results:
        assert r["id"] in printed
        if r["status"] == "ok":
            assert set(r["policies"]) == {p["name"] for p in config["policies"]}
    decisions = {r["id"]: r["decision"] for r in results if r["status"] == "ok"}
    assert decisions["calm-audio"] == "allow"
    assert decisions["coffee-text"] == "review"  # the default approves no text automatically
    assert decisions["strobe-video"] == "block"
    # the flagged profane ad is blocked when its raw score reaches the stored band, else reviewed
    band = {p["name"]: p["band"] for p in config["policies"]}["offensive_language"]
    raw = {r["id"]: r for r in results}["profane-text"]["policies"]["offensive_language"]
    blocked = band["block"] is not None and raw["raw_score"] >= band["block"]
    assert decisions["profane-text"] == ("block" if blocked else "review")
    for r in results:
        if r["status"] == "ok":
            assert r["model"]["decisions"]["offensive_language"]["method"] == "learn_then_test"
            assert r["model"]["decisions"]["loudness"]["method"] == "margin"
    flags = {r["id"]: set(r["flags"]) for r in results if r["status"] == "ok"}
    assert flags["profane-text"] == {"offensive_language"}
    assert "hate_speech" in flags["hateful-text"]
    assert flags["blurry-image"] == flags["tiny-image"] == {"low_quality_image"}
    assert flags["loud-audio"] == {"loudness"}
    assert flags["strobe-video"] == {"flashing"}
    for clean in ("coffee-text", "sharp-image", "calm-audio", "all-four"):
        assert flags[clean] == set(), clean


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "score" in capsys.readouterr().out


def test_an_output_that_is_the_ads_file_is_refused_before_it_is_emptied(tmp_path, capsys) -> None:
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "a", "text": "fresh coffee"}\n')
    (tmp_path / "link.jsonl").symlink_to(ads)
    for command in (["score", str(ads), "-o"], ["explain", str(ads), "-o"]):
        for output in (ads, tmp_path / "link.jsonl"):
            assert main([*command, str(output)]) == 4
            assert "is the ads file" in capsys.readouterr().err
    assert ads.read_text() == '{"id": "a", "text": "fresh coffee"}\n'


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        (["--device", "bogus"], "device 'bogus'"),
    ],
)
def test_a_batch_size_under_1_or_an_unknown_device_is_refused_plainly(
    tmp_path, capsys, option, message
) -> None:
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "a", "text": "fresh coffee"}\n')
    try:
        code = main(["score", str(ads), "-o", str(tmp_path / "out.jsonl"), *option])
    except SystemExit as usage:  # argparse
        code = int(usage.code or 0)
    assert code in (2, 4)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--epochs", "0"], "--epochs: must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        (["--lr", "-1"], "--lr: must be a finite number of at least 0, got -1"),
        (["--encoder-lr", "nan"], "--encoder-lr: must be a finite number of at least 0"),
    ],
)
def test_training_options_that_cannot_train_are_usage_errors(tmp_path, capsys, option, message):
    """--epochs 0 ended in an UnboundLocalError after reading the data, --batch-size 0 in a
    ZeroDivisionError, and --lr -1 trained, climbing the loss: each is refused up front."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "a", "text": "fresh coffee", "labels": {"offensive_language": 0}}\n')
    with pytest.raises(SystemExit) as usage:
        main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *option])
    assert usage.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("encoders: {text: {type: bert_base}}", "no encoder named 'bert_base'; registered: ["),
        (
            "encoders: {text: {type: minilm, max_lenght: 64}}",
            "encoder 'minilm': unknown settings ['max_lenght']",
        ),
        ("head_hiden: 32", "config: unknown keys ['head_hiden']; accepted: ["),
        ("limits: {max_image_pixel: 5}", "config: limits: unknown keys ['max_image_pixel']"),
        ("head_hidden: -5", "config: head_hidden -5: a whole number of at least 0"),
    ],
)
def test_a_config_mistake_is_one_line_naming_it_not_a_traceback(
    tmp_path, capsys, config, message
) -> None:
    """A typo in a config (an encoder, a setting, a top-level key) ended `adpolicy train` in
    a KeyError or TypeError traceback, or was ignored (``head_hiden``: linear heads)."""
    base = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())
    base.update(yaml.safe_load(config))
    if "encoders" in yaml.safe_load(config):
        base["policies"] = [{"name": "offensive_language", "heads": ["text"]}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "a", "text": "fresh coffee", "labels": {"offensive_language": 0}}\n')
    run = ["train", "--config", str(path), "--data", str(data), "--val", str(data)]
    assert main([*run, "--out", str(tmp_path / "run")]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"adpolicy train: {message}")
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_missing_checkpoint_or_config_is_named_as_such(tmp_path, capsys) -> None:
    """`adpolicy export runs/nope` warned that runs/nope was a config, then looked for
    ensemble/configs/runs/nope.yaml and failed with a traceback."""
    assert main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "art")]) == 4
    err = capsys.readouterr().err
    assert "no such checkpoint directory, config file or config name (['default', 'full'])" in err
    assert "is a config" not in err


def test_a_checkpoint_given_as_a_config_is_named_a_directory(tmp_path, capsys) -> None:
    """`train --config runs/ckpt` said "no such checkpoint directory" of a directory that is
    one: it says what a config is and where a checkpoint goes."""
    (tmp_path / "ckpt").mkdir()
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "a", "text": "tea", "labels": {"offensive_language": 0}}\n')
    run = ["train", "--config", str(tmp_path / "ckpt"), "--data", str(data), "--val", str(data)]
    assert main([*run, "--out", str(tmp_path / "out")]) == 4
    assert "ckpt is a directory: a config is a YAML or JSON file" in capsys.readouterr().err
