"""Offline scoring: results, withheld untrained scores, and bad ads isolated per field."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble import Scorer, build_ensemble
from ensemble.batch import AdPreparer, PreparedAd
from ensemble.scoring import load
from tests.wavfile import wav_bytes


@pytest.fixture(scope="module")
def scorer(small_model) -> Scorer:
    return Scorer(small_model, batch_size=3)


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_thresholds_and_withheld_untrained(scorer, sample_ads, sample_media) -> None:
    results = scorer.score(sample_ads.values(), base_dir=sample_media.parent)
    assert [r["id"] for r in results] == list(sample_ads)
    text_only, image_only, _, all_four = results
    assert text_only["policies"]["offensive_language"]["status"] == "scored"
    assert 0 <= text_only["policies"]["offensive_language"]["score"] <= 1
    assert text_only["policies"]["adult"]["status"] == "not_applicable"
    assert image_only["policies"]["offensive_language"]["status"] == "not_applicable"
    assert image_only["policies"]["adult"] == {
        "threshold": 0.5,
        "status": "untrained",
        "score": None,
        "flag": None,
        "decision": None,
    }
    assert set(all_four["modalities"]) == {"text", "image", "audio", "video"}
    assert "adult" not in all_four["modalities"]["image"]  # untrained: never shown
    for r in results:
        for name, entry in r["policies"].items():
            if entry["status"] == "scored":
                assert entry["flag"] == (entry["score"] >= entry["threshold"])
                assert (name in r["flags"]) == entry["flag"]


def test_bad_ads_get_errors_naming_the_field_and_others_are_scored(
    scorer, sample_media, tmp_path
) -> None:
    media = sample_media
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()
    lines = [
        json.dumps({"id": "good-text", "text": "Fresh coffee"}),
        json.dumps({"id": "corrupt-image", "image": str(media / "corrupt.png")}),
        json.dumps({"id": "missing-file", "audio": "nowhere.wav"}),
        json.dumps({"id": "wrong-type", "text": 123}),
        "{not json",
        json.dumps({"id": "bad-base64", "image": {"base64": "@@@"}}),
        json.dumps({"id": "corrupt-b64-image", "image": {"base64": corrupt}}),
        json.dumps({"id": "corrupt-audio", "audio": str(media / "corrupt.png")}),
        json.dumps({"id": "corrupt-video", "video": str(media / "corrupt.png")}),
        json.dumps({"id": "unknown-field", "text": "hi", "colour": "red"}),
        json.dumps({"id": "empty"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "good-image", "image": str(media / "sharp_banner.png")}),
    ]
    ads = _write_jsonl(media.parent / "_test_bad_ads.jsonl", lines)  # media inside its folder
    try:
        results = scorer.score_file(ads)
    finally:
        ads.unlink()
    by_id = {r["id"]: r for r in results}
    assert len(results) == len(lines)
    assert by_id["good-text"]["status"] == by_id["good-image"]["status"] == "ok"
    expected = {
        "corrupt-image": ("image", "cannot decode image"),
        "missing-file": ("audio", "cannot read 'nowhere.wav'"),
        "wrong-type": ("text", "expected a string, got int"),
        "line-5": ("ad", "not valid JSON"),
        "bad-base64": ("image", "invalid base64"),
        "corrupt-b64-image": ("image", "cannot decode image"),
        "corrupt-audio": ("audio", "cannot decode audio"),
        "corrupt-video": ("video", "cannot decode video"),
        "unknown-field": ("colour", "unknown field"),
        "empty": ("ad", "no text, image, audio or video"),
        "line-12": ("ad", "expected a JSON object"),
    }
    for ad_id, (field, problem) in expected.items():
        result = by_id[ad_id]
        assert result["status"] == "error", ad_id
        assert result["http_status"] == 400
        assert result["errors"][0]["field"] == field, ad_id
        assert problem in result["errors"][0]["error"], ad_id


def test_every_problem_of_an_ad_is_listed(small_config) -> None:
    from ensemble.rows import AdError

    with pytest.raises(AdError) as info:
        AdPreparer(small_config).prepare({"id": [1], "text": 5, "image": 7})
    assert [e["field"] for e in info.value.to_json()] == ["id", "text", "image"]
    with pytest.raises(AdError) as info:
        AdPreparer(small_config).prepare({"txt": "hi", "colour": "red", "meta": {}})
    errors = info.value.to_json()
    assert [e["field"] for e in errors] == ["colour", "txt"]
    assert "accepted: id, text, image, audio, video, labels, meta" in errors[0]["error"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_output_formats(scorer, sample_media, tmp_path, suffix) -> None:
    ads = _write_jsonl(
        sample_media.parent / f"_test_ads{suffix}.jsonl",
        [
            json.dumps({"id": "a", "text": "hi"}),
            json.dumps({"id": "b", "image": "media/corrupt.png"}),
        ],
    )
    try:
        out = tmp_path / f"results{suffix}"
        scorer.score_file_to(ads, out, progress=False)
    finally:
        ads.unlink()
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert rows[0]["policies"]["offensive_language"]["status"] == "scored"
    else:
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        rows = frame.to_dict("records")
        assert 0 <= rows[0]["offensive_language.score"] <= 1
        assert "cannot decode image" in rows[1]["error"]
    assert [r["status"] for r in rows] == ["ok", "error"]


def test_resume_scores_the_ads_of_a_repeated_id_not_yet_written(scorer, tmp_path) -> None:
    """An ads file may repeat an id: a run cut after the first "a" resumes with the second."""
    texts = ("hi", "yo", "hey", "ok")
    lines = [json.dumps({"id": i, "text": t}) for i, t in zip("abac", texts, strict=True)]
    out = tmp_path / "out.jsonl"
    scorer.score_file_to(_write_jsonl(tmp_path / "cut.jsonl", lines[:2]), out, progress=False)
    ads = _write_jsonl(tmp_path / "ads.jsonl", lines)
    summary = scorer.score_file_to(ads, out, resume=True, progress=False)
    assert summary.skipped == 2
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == list("abac")


def test_unknown_output_format(scorer, tmp_path) -> None:
    ads = _write_jsonl(tmp_path / "ads.jsonl", [json.dumps({"text": "hi"})])
    with pytest.raises(ValueError, match="unsupported output format"):
        scorer.score_file_to(ads, tmp_path / "out.xlsx", progress=False)


def test_a_graph_without_config_is_refused(small_model) -> None:
    graph = build_ensemble(small_model.config).forward
    with pytest.raises(ValueError, match="no config"):
        Scorer(graph)


def test_blank_text_and_empty_media_are_never_scored_silently(scorer, sample_media) -> None:
    ads = [
        {"id": "blank", "text": " \u200b\u2060\n"},
        {"id": "blank-beside-image", "text": "", "image": "media/sharp_banner.png"},
        {"id": "empty-image", "text": "hi", "image": ""},
    ]
    blank, beside, empty = scorer.score(ads, base_dir=sample_media.parent)
    assert blank["errors"] == [
        {"field": "text", "error": "no visible characters (blank or invisible)"}
    ]
    assert beside["status"] == "ok"
    assert beside["warnings"] == ["text: no visible characters; scored on the other fields"]
    assert "text" not in beside["modalities"]
    assert empty["errors"][0]["field"] == "image"


def test_text_the_model_cannot_read_is_scored_with_a_warning(small_model) -> None:
    """Emoji or CJK alone normalise to nothing: scored as the empty text, with a warning that
    names the field; the English ads of the same batch are scored as they are alone."""
    preparer = AdPreparer(small_model.config, overrides={"text": {"normalizer": "social-v3"}})
    scorer = Scorer(small_model, batch_size=4, preparer=preparer)
    ads = [
        {"id": "emoji", "text": "\U0001f525\U0001f525\U0001f525"},
        {"id": "english", "text": "Summer sale: 30% off all sandals."},
        {"id": "cjk", "text": "全新手机优惠，今天下单立减"},
        {"id": "mostly-russian", "text": "Купите новый iPhone сегодня"},
        {"id": "lookalike", "text": "Summ\u0435r s\u0430l\u0435: 30% off \u0430ll s\u0430ndals."},
    ]
    emoji, english, cjk, russian, lookalike = scored = list(scorer.iter_scored(ads))
    for item in (emoji, cjk):
        (warning,) = item.row["warnings"]
        assert warning.startswith("text: nothing of it survives normalisation")
        assert item.row["status"] == "ok"
        assert item.row["policies"]["offensive_language"]["status"] == "scored"
    assert emoji.scores is not None
    assert cjk.scores is not None
    assert torch.equal(emoji.scores, cjk.scores)  # both the empty text
    assert russian.row["warnings"][0].startswith("text: 18 of its 24 letters are not in")
    assert english.row["warnings"] == lookalike.row["warnings"] == []
    (alone,) = scorer.iter_scored([ads[1]])
    assert english.scores is not None
    assert alone.scores is not None
    torch.testing.assert_close(english.scores, alone.scores)
    assert lookalike.scores is not None
    torch.testing.assert_close(lookalike.scores, english.scores)
    assert [s.row["id"] for s in scored] == [ad["id"] for ad in ads]


def test_an_unexpected_exception_costs_one_ad(scorer, monkeypatch) -> None:
    prepare = scorer.preparer.preparers["text"][0][1].prepare

    def fragile(text: str):
        if text == "boom":
            raise RuntimeError("a tokenizer bug")
        return prepare(text)

    monkeypatch.setattr(scorer.preparer.preparers["text"][0][1], "prepare", fragile)
    rows = scorer.score([{"id": "a", "text": "fine"}, {"id": "b", "text": "boom"}])
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[1]["http_status"] == 500
    assert "RuntimeError" in rows[1]["errors"][0]["error"]
    with pytest.raises(ValueError, match="ad b cannot be prepared"):
        scorer.score([{"id": "b", "text": "boom"}], on_error="raise")
    assert [
        r["id"] for r in scorer.score([{"id": "b", "text": "boom"}, {"text": "x"}], on_error="skip")
    ] == ["#1"]


def test_every_row_has_the_same_keys_and_the_model(scorer) -> None:
    ok, bad = scorer.score([{"text": "hi"}, {"text": 1}])
    decisions = {p: {"method": "threshold"} for p in ("offensive_language", "violence", "adult")}
    for row in (ok, bad):
        assert row["model"] == {"name": "small", "version": "test", "decisions": decisions}
        assert row["warnings"] == []
    assert (ok["id"], bad["id"]) == ("#0", "#1")


def test_a_long_text_takes_each_policys_maximum_over_its_windows(
    scorer, sample_ads, sample_media
) -> None:
    """A text longer than ``max_length`` (16 here) is scored on its first row and on its
    windows; the ad keeps the maximum, its own measurements and presence, and the ads beside
    it in the pass score as they do alone."""
    base = sample_media.parent
    long_ad = dict(sample_ads["all-four"], text=" ".join(f"word{i} again" for i in range(40)))
    ad = scorer.preparer.prepare(long_ad, base_dir=base)
    assert ad.windows
    alone = scorer.preparer.prepare(sample_ads["text-only"])
    _, out = scorer.run([alone, ad])
    first = PreparedAd(ad.id, ad.tensors, ad.presence)  # the ad without its windows
    _, rows = scorer.run([first, *ad.window_ads()])
    assert torch.equal(out.scores[1], rows.scores.amax(0))
    assert torch.equal(out.modality_scores[1], rows.modality_scores.amax(0))
    assert torch.equal(out.measurements[1], rows.measurements[0])
    assert not torch.equal(rows.scores[0], rows.scores.amax(0))  # a window raised a score
    _, single = scorer.run([alone])
    torch.testing.assert_close(out.scores[0], single.scores[0])
    row = scorer.score([long_ad], base_dir=base)[0]
    assert row["status"] == "ok"
    assert row["policies"]["violence"]["score"] == pytest.approx(float(out.scores[1, 1]), abs=1e-6)


@pytest.fixture(scope="module")
def default_scorer() -> Scorer:
    return load()


def test_multichannel_and_short_audio_score_with_the_standards_measurement(
    default_scorer, tmp_path
) -> None:
    """Through the default model's public scoring path: 5.1 with a 997 Hz sine in the centre
    only reads what BS.1770-4 says a sine in one front channel reads (20 log10(A) - 3.01:
    -24 LUFS, allowed; -9, blocked), where averaged to mono it read 15.6 LU low; a 300 ms
    full-scale beep is measured (loud, not "too quiet") with a warning naming the field; a WAV
    declaring no samples is refused naming the field; the other ads of the batch still score."""
    t = np.arange(3 * 48_000) / 48_000
    for name, amplitude in (("compliant", 0.0891), ("loud", 0.5)):
        frames = np.zeros((t.size, 6))
        frames[:, 2] = amplitude * np.sin(2 * np.pi * 997 * t)
        (tmp_path / f"{name}.wav").write_bytes(wav_bytes(frames, 48_000))
    beep = np.sin(2 * np.pi * 997 * t[: 48_000 * 3 // 10])[:, None]
    (tmp_path / "beep.wav").write_bytes(wav_bytes(beep, 48_000))
    (tmp_path / "empty.wav").write_bytes(wav_bytes(beep, 48_000, data_size=0))
    ads = [
        {"id": "compliant", "audio": "compliant.wav"},
        {"id": "empty", "audio": "empty.wav"},
        {"id": "loud", "audio": "loud.wav"},
        {"id": "beep", "audio": "beep.wav"},
        {"id": "text", "text": "Fresh coffee, delivered weekly."},
    ]
    rows = {r["id"]: r for r in default_scorer.score(ads, base_dir=tmp_path)}
    lufs = {
        k: rows[k]["measurements"]["audio_loudness.integrated_lufs"]
        for k in ("compliant", "loud", "beep")
    }
    assert lufs["compliant"] == pytest.approx(20 * np.log10(0.0891) - 3.01, abs=0.1)
    assert lufs["loud"] == pytest.approx(20 * np.log10(0.5) - 3.01, abs=0.1)
    assert lufs["beep"] == pytest.approx(-3.01, abs=0.1)
    decisions = {k: rows[k]["policies"]["loudness"]["decision"] for k in lufs}
    assert decisions == {"compliant": "allow", "loud": "block", "beep": "block"}
    assert rows["compliant"]["warnings"] == []
    assert rows["beep"]["warnings"] == [
        "audio: loudness measured over the clip's 300 ms, fewer than the 400 ms of a BS.1770 "
        "gating block (one block over its own samples)"
    ]
    assert rows["empty"]["status"] == "error"
    assert rows["empty"]["errors"][0]["field"] == "audio"
    assert "declares no samples" in rows["empty"]["errors"][0]["error"]
    assert rows["text"]["status"] == "ok"
    assert rows["text"]["policies"]["offensive_language"]["status"] == "scored"


def test_collation_pads_channels_to_the_widest_bucket_and_batches_by_it(default_scorer) -> None:
    """Ads are keyed by their channel bucket as by their length bucket, so stereo ads never
    share a pass with 5.1; a batch that does mix them pads to 8 channels of weight 0."""
    preparer = default_scorer.preparer
    clips = {"stereo": 2, "mono": 1, "surround": 6}
    prepared = {}
    for name, channels in clips.items():
        data = wav_bytes(np.full((48_000, channels), 0.1), 48_000)
        prepared[name] = preparer.prepare({"id": name, "audio": data})
    keys = {name: preparer.bucket_key(p) for name, p in prepared.items()}
    assert keys["stereo"] == keys["mono"] != keys["surround"]
    assert preparer.apart_load(prepared["surround"]) == 4 * preparer.apart_load(prepared["mono"])
    narrow = preparer.collate([prepared["stereo"], prepared["mono"]])
    wide = preparer.collate(list(prepared.values()))
    position = preparer.input_names.index("audio_loudness.waveform")
    assert narrow.inputs[position].shape[2] == 2
    assert wide.inputs[position].shape[2] == 8
    weights = wide.inputs[preparer.input_names.index("audio_loudness.weights")]
    torch.testing.assert_close(
        weights,
        torch.tensor(
            [[1.0, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1.41, 1.41, 0, 0]]
        ),
    )


def test_a_scorer_refuses_a_batch_size_under_1() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        load(batch_size=0)


@pytest.mark.parametrize("wrong", [{"id": "a", "text": "buy now"}, "hello", None])
def test_one_ad_instead_of_a_list_of_ads_is_a_type_error(wrong) -> None:
    # a dict was scored as its keys, a string as its characters: one error row each
    with pytest.raises(TypeError, match="expected a list \\(or any iterable\\) of ads"):
        load().score(wrong)
