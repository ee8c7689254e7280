"""Explanations (``ensemble.explain``) against the scoring path they explain, on a small model
with every analyzer (tiny BERT text head, image quality, flash, loudness)."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ensemble import ModelConfig, build_ensemble, samples
from ensemble.cli import main
from ensemble.explain import Explainer, ExplainSettings, grid_boxes, occlude, occluder
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import save_pretrained
from ensemble.scoring import Scorer

ATOL = 1e-5


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    config = {
        "name": "explained",
        "version": "test",
        "encoders": {
            "text": {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16},
            "image_quality": {"type": "image_quality"},
            "video_flash": {"type": "flash", "max_seconds": 4},
            "audio_loudness": {"type": "loudness", "max_seconds": 10},
        },
        "policies": [
            {"name": "offensive_language", "heads": ["text"], "calibrated": True},
            {"name": "hate_speech", "heads": ["text"], "calibrated": False},
            {"name": "flashing", "heads": ["video_flash"], "calibrated": True},
            {"name": "loudness", "heads": ["audio_loudness"], "calibrated": True},
            {"name": "low_quality_image", "heads": ["image_quality"], "calibrated": True},
        ],
        "limits": {"max_seconds": 10},
    }
    return build_ensemble(ModelConfig.from_json(config), seed=0)


@pytest.fixture(scope="module")
def scorer(model: AdPolicyEnsemble) -> Scorer:
    return Scorer(model, batch_size=4, workers=1)


@pytest.fixture(scope="module")
def explainer(scorer: Scorer) -> Explainer:
    return Explainer(scorer, ExplainSettings(grid=4))


def png(image: Any) -> dict[str, str]:
    return {"base64": base64.b64encode(samples.png_bytes(image)).decode()}


def test_a_word_attribution_is_the_score_lost_by_deleting_the_word(
    explainer: Explainer, scorer: Scorer
) -> None:
    text = "you are a total idiot, buy now"
    [row] = explainer.explain([{"id": "t", "text": text}])
    part = row["explanation"]["text"]
    words = text.split()
    assert part["words"] == words
    assert part["variants"] == len(words) + 1
    assert set(part["attribution"]) == {"offensive_language"}  # hate_speech is untrained
    deleted = [{"text": " ".join(words[:i] + words[i + 1 :])} for i in range(len(words))]
    scores = [r["policies"]["offensive_language"]["score"] for r in scorer.score(deleted)]
    base = row["policies"]["offensive_language"]["score"]
    assert part["score"]["offensive_language"] == pytest.approx(base, abs=ATOL)
    want = [base - s for s in scores]
    assert part["attribution"]["offensive_language"] == pytest.approx(want, abs=ATOL)
    assert any(abs(a) > 1e-4 for a in want)  # the tiny head does react to words


def test_words_past_max_words_get_no_attribution(scorer: Scorer) -> None:
    explainer = Explainer(scorer, ExplainSettings(max_words=2))
    [row] = explainer.explain([{"text": "one two three four"}])
    part = row["explanation"]["text"]
    assert part["variants"] == 3
    assert part["attribution"]["offensive_language"][2:] == [None, None]


def test_an_image_cell_attribution_is_the_score_lost_by_occluding_the_cell(
    explainer: Explainer, scorer: Scorer
) -> None:
    """A scene whose top-left 3 x 3 of 4 x 4 cells are blurred: each cell's attribution is
    what scoring the occluded image (as a PNG ad) loses, and the blurred cells rank above the
    sharp ones (blurring a sharp cell makes the image look worse: a negative attribution)."""
    boxes = grid_boxes((480, 480), 4)
    image, _ = samples.partly_blurred(480, 480, (0, 0, 360, 360), seed=3)
    [row] = explainer.explain([{"id": "img", "image": png(image)}])
    part = row["explanation"]["image"]
    assert (part["grid"], part["variants"], part["occluder"]) == ([4, 4], 17, "blur")
    grid = np.asarray(part["attribution"]["low_quality_image"])
    assert grid.shape == (4, 4)
    filler = occluder(image, "blur", boxes[0])
    cells = [0, 5, 3, 15]
    occluded = scorer.score([{"image": png(occlude(image, filler, boxes[k]))} for k in cells])
    base = row["policies"]["low_quality_image"]["score"]
    want = [base - r["policies"]["low_quality_image"]["score"] for r in occluded]
    assert grid.ravel()[cells].tolist() == pytest.approx(want, abs=ATOL)
    blurred = np.zeros((4, 4), bool)
    blurred[:3, :3] = True
    assert grid[blurred].mean() > grid[~blurred].mean() + 0.005
    assert blurred.ravel()[np.argsort(-grid.ravel())[:3]].all()


def test_mean_occluder_fills_the_cell_with_the_mean_colour() -> None:
    image, _ = samples.partly_blurred(64, 48, (0, 0, 32, 24), seed=1)
    box = grid_boxes(image.size, 2)[3]
    filled = np.asarray(occlude(image, occluder(image, "mean", box), box))
    mean = np.asarray(image).reshape(-1, 3).mean(0)
    assert np.abs(filled[24:, 32:] - mean).max() <= 0.5
    assert np.array_equal(filled[:24], np.asarray(image)[:24])


def test_video_audio_and_the_breakdown(explainer: Explainer, sample_media: Path) -> None:
    ad = {
        "id": "av",
        "text": "great deal",
        "video": "media/strobe.mp4",
        "audio": "media/loud_jingle.mp3",
    }
    [row] = explainer.explain([ad], base_dir=sample_media.parent)
    explanation = row["explanation"]
    video, audio = explanation["video"], explanation["audio"]
    measured = row["measurements"]
    assert len(video["flashes_per_second"]) == 3  # 90 frames at 30 fps
    assert max(video["flashes_per_second"]) == pytest.approx(measured["video_flash.max_flashes"])
    assert video["worst_window_s"] == measured["video_flash.worst_window_s"]
    assert video["limit"] == 3.0
    assert len(audio["lufs_per_second"]) == math.ceil(measured["audio_loudness.seconds"])  # 6 s +
    assert np.mean(audio["lufs_per_second"]) == pytest.approx(
        measured["audio_loudness.integrated_lufs"], abs=0.5
    )
    assert (audio["target_lufs"], audio["tolerance_lu"]) == (-24.0, 2.0)
    breakdown = explanation["breakdown"]
    assert set(breakdown) == {"offensive_language", "flashing", "loudness"}
    for policy, entry in breakdown.items():
        assert entry["score"] == row["policies"][policy]["score"]
        assert entry["modalities"][entry["decided_by"]] == pytest.approx(entry["score"], abs=1e-6)
    assert "image" not in explanation


def test_bad_ads_keep_their_error_rows_and_the_others_are_explained(
    explainer: Explainer, scorer: Scorer, sample_media: Path
) -> None:
    ads = [
        {"id": "broken", "text": "hello", "image": "media/corrupt.png"},
        {"id": "fine", "text": "hello there"},
        {"id": "nothing"},
    ]
    base = sample_media.parent
    rows = explainer.explain(ads, base_dir=base)
    assert [r["id"] for r in rows] == ["broken", "fine", "nothing"]
    assert rows[0] == scorer.score([ads[0]], base_dir=base)[0]
    assert (rows[2]["status"], rows[2]["errors"][0]["field"]) == ("error", "ad")
    assert "text" in rows[1]["explanation"]


def test_the_command_writes_rows_and_one_self_contained_page(
    model: AdPolicyEnsemble, sample_media: Path, tmp_path: Path
) -> None:
    checkpoint = save_pretrained(model, tmp_path / "ckpt")
    ads = tmp_path / "ads.jsonl"
    media = sample_media.resolve()
    lines = [
        {"id": "a", "text": "buy this now", "image": str(media / "blurry_banner.jpg")},
        {"id": "b", "video": str(media / "strobe.mp4"), "audio": str(media / "calm_voiceover.wav")},
        {"id": "c", "image": str(media / "corrupt.png")},
    ]
    ads.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out, page = tmp_path / "out.jsonl", tmp_path / "report.html"
    code = main(
        [
            *("explain", str(ads), "-o", str(out), "--html", str(page)),
            *("--model", str(checkpoint), "--allow-any-path", "--grid", "3"),
        ]
    )
    assert code == 3  # one ad failed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert np.shape(rows[0]["explanation"]["image"]["attribution"]["low_quality_image"]) == (3, 3)
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 1
    assert html.count("<svg") == 2  # flashes and loudness of ad b
    assert "cannot decode image" in html
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", html)
