"""Monitoring: drift statistics, the baseline, the report, its violations, HTML and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ensemble import ModelConfig, build_ensemble, save_pretrained
from ensemble.cli import main
from ensemble.model import AdPolicyEnsemble
from ensemble.scoring import Scorer
from ensemble.training.data import read_manifest
from export.exporter import ExportOptions, export_model
from serve.capture import CaptureWriter
from serve.monitor import Observations, Thresholds, compare
from serve.monitor.baseline import Pipeline, attach_baseline, load_baseline, summarize
from serve.monitor.drift import (
    Distribution,
    benjamini_hochberg,
    bin_counts,
    js_distance,
    ks_test,
    proportion_test,
    psi,
)
from serve.monitor.html import render_html
from serve.monitor.observe import select
from serve.monitor.quality import labelled_metrics, labels_of, read_labels
from tests.ensemble.conftest import small_config_json
from tests.serve.monitor_data import Traffic, records

BASELINE_N, PRODUCTION_N = 2000, 400


def baseline_of(seed: int = 1000, *, labelled: bool = False) -> dict[str, Any]:
    recs = list(records(BASELINE_N, seed, prefix="base"))
    return summarize(Observations.from_records(recs), labels=labels_of(recs) if labelled else None)


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return baseline_of()


def report_of(
    baseline: dict[str, Any], traffic: Traffic, seed: int = 0, n: int = PRODUCTION_N, **kw: Any
) -> dict[str, Any]:
    return compare(baseline, Observations.from_records(records(n, seed, traffic)), **kw)


def violated(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(v["check"], v["scope"], v["name"]) for v in report["violations"]}


# --- statistics ---------------------------------------------------------------------------


def test_psi_and_js_are_zero_for_equal_bins_and_grow_with_the_shift() -> None:
    counts = np.array([100, 100, 100, 100])
    assert psi(counts, counts) == pytest.approx(0.0)
    assert js_distance(counts, counts) == pytest.approx(0.0)
    small, large = np.array([120, 100, 100, 80]), np.array([300, 80, 15, 5])
    assert 0 < psi(counts, small) < psi(counts, large)
    assert 0 < js_distance(counts, small) < js_distance(counts, large) <= 1
    # PSI of known proportions (no empty bin, so smoothing barely matters): 0.1 ln 2 * ...
    e, a = np.array([5000, 5000]), np.array([7500, 2500])
    assert psi(e, a) == pytest.approx(0.25 * np.log(1.5 / 0.5), rel=1e-3)
    assert np.isfinite(psi(np.array([10, 0]), np.array([0, 10])))  # empty bins stay finite


def test_distribution_bins_on_baseline_deciles_and_merges_ties() -> None:
    dist = Distribution.from_values(np.arange(1000.0), sample_size=100)
    assert len(dist.edges) == 9
    assert dist.counts == [100] * 10
    assert len(dist.sample) == 100
    assert dist.quantiles["0.5"] == pytest.approx(499.5)
    constant = Distribution.from_values([48000.0] * 50)
    assert constant.edges == [48000.0]
    assert constant.counts == [0, 50]
    assert bin_counts([44100.0, 48000.0, 96000.0], constant.edges).tolist() == [1, 2]
    assert Distribution.from_json(dist.to_json()) == dist
    with pytest.raises(ValueError, match="at least one"):
        Distribution.from_values([])


def test_ks_on_a_discrete_statistic_compares_values_as_the_baseline_stored_them() -> None:
    levels = np.array([-33.467276089, -27.447065884, -23.925435436, -21.426555202])
    stored = Distribution.from_values(np.repeat(levels, 50)).sample  # rounded to 6 digits
    statistic, p = ks_test(stored, np.repeat(levels, 30))  # full precision, same mix
    assert statistic == pytest.approx(0.0)
    assert p == pytest.approx(1.0)
    statistic, p = ks_test(stored, np.repeat(levels[:2], 60))
    assert statistic == pytest.approx(0.5)
    assert p < 1e-6


def test_benjamini_hochberg_and_proportion_test() -> None:
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01*4/1, 0.03*4/2, 0.04*4/3, 0.5; then the running minimum from the top
    assert adjusted == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert benjamini_hochberg([]) == []
    assert proportion_test(50, 100, 50, 100) == pytest.approx(1.0)
    assert proportion_test(10, 100, 40, 100) < 1e-5
    assert proportion_test(0, 100, 0, 100) == 1.0
    assert proportion_test(0, 0, 5, 10) == 1.0


def test_labelled_metrics_at_the_recorded_threshold() -> None:
    labels = labels_of(
        [
            {"id": "a", "labels": {"p": 1}},
            {"id": "b", "labels": {"p": 0.8}},  # a soft label: 1 from 0.5 up
            {"id": "c", "labels": {"p": 0}},
            {"id": "d", "labels": {"p": None}},  # unknown: left out
            {"id": "e", "labels": {"p": 0.2}},
        ]
    )
    assert labels == {"a": {"p": 1}, "b": {"p": 1}, "c": {"p": 0}, "e": {"p": 0}}
    scored = {"p": {"a": (0.9, 0.5), "b": (0.3, 0.5), "c": (0.6, 0.5), "d": (0.9, 0.5),
                    "e": (0.1, 0.5), "unlabelled": (0.9, 0.5)}}  # fmt: skip
    m = labelled_metrics(scored, labels)["p"]
    assert m["n"] == 4
    assert m["threshold"] == 0.5
    assert m["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5, 0.5)
    assert "thresholds_seen" not in m
    scored["p"]["e"] = (0.1, 0.05)  # another model version flagged e
    assert labelled_metrics(scored, labels)["p"]["thresholds_seen"] == [0.05, 0.5]


# --- the report on synthetic traffic ------------------------------------------------------


def test_no_drift_gives_no_violation_over_20_seeds(baseline: dict[str, Any]) -> None:
    worst = {"psi": 0.0, "js": 0.0}
    for seed in range(20):
        report = report_of(baseline, Traffic(), seed=seed)
        assert report["violations"] == [], (seed, report["violations"])
        assert report["ok"]
        entries = [e for group in ("policies", "inputs") for e in report[group].values()]
        judged = [e for e in entries if e["judged"]]
        assert {id(e) for e in judged} == {id(e) for e in entries if e["count"] >= 200}
        assert len(judged) >= 5
        for key in worst:
            worst[key] = max(worst[key], *(e[key] for e in judged))
    assert worst["psi"] < 0.2
    assert worst["js"] < 0.2
    print(f"no drift, 20 seeds: max PSI {worst['psi']:.3f}, max JS {worst['js']:.3f}")


def test_shifted_scores_violate_on_that_policy_only(baseline: dict[str, Any]) -> None:
    report = report_of(baseline, Traffic(offensive_shift=0.25))
    found = violated(report)
    assert {
        ("psi", "policy", "offensive_language"),
        ("ks", "policy", "offensive_language"),
    } <= found
    assert ("flag_rate", "policy", "offensive_language") in found
    assert {name for _, _, name in found} == {"offensive_language"}
    entry = report["policies"]["offensive_language"]
    assert entry["psi"] > 0.5
    assert report["policies"]["hate_speech"]["psi"] < 0.2
    assert not report["ok"]
    print(f"shifted offensive_language: PSI {entry['psi']:.3f}, JS {entry['js']:.3f}")


def test_dropped_modality_violates_its_presence_rate(baseline: dict[str, Any]) -> None:
    report = report_of(baseline, Traffic(drop="text"))
    assert ("presence_rate", "modality", "text") in violated(report)
    assert report["presence"]["text"]["production"] == 0.0
    assert report["presence"]["text"]["change"] < -0.8
    # Text-only quantities are reported, not judged: there are no values to compare.
    assert report["policies"]["offensive_language"]["count"] == 0
    assert not report["policies"]["offensive_language"]["judged"]
    assert {name for _, _, name in violated(report)} == {"text"}


def test_louder_audio_violates_on_the_audio_statistics(baseline: dict[str, Any]) -> None:
    report = report_of(baseline, Traffic(loud=True), n=1000)
    found = violated(report)
    assert ("psi", "input", "audio_rms_db") in found
    assert ("psi", "input", "loudness.lufs") in found
    assert ("psi", "policy", "loudness") in found
    assert not {name for _, _, name in found} & {"text_tokens", "image_width", "text"}


def test_too_few_values_are_reported_not_judged(baseline: dict[str, Any]) -> None:
    report = report_of(baseline, Traffic(offensive_shift=0.4), n=60)
    entry = report["policies"]["offensive_language"]
    assert entry["psi"] > 0.5
    assert not entry["judged"]
    assert not report["violations"]
    assert (report["judged"], report["ok"]) == (False, False)  # no verdict is not a pass
    assert any(note.startswith("no check could be judged") for note in report["notes"])
    lowered = report_of(
        baseline, Traffic(offensive_shift=0.4), n=60, thresholds=Thresholds(min_samples=40)
    )
    assert ("psi", "policy", "offensive_language") in violated(lowered)


def test_labels_give_quality_and_an_f1_drop() -> None:
    base = baseline_of(labelled=True)
    assert base["labelled"]["offensive_language"]["f1"] > 0.8
    good = list(records(PRODUCTION_N, 1))
    report = compare(base, Observations.from_records(good), labels=labels_of(good))
    assert report["ok"], report["violations"]
    assert report["labelled"]["offensive_language"]["f1_drop"] < 0.1
    blind = list(records(PRODUCTION_N, 2, Traffic(informative=False)))
    report = compare(base, Observations.from_records(blind), labels=labels_of(blind))
    assert ("f1_drop", "policy", "offensive_language") in violated(report)
    metrics = report["labelled"]["offensive_language"]
    assert metrics["production"]["f1"] < 0.4
    assert metrics["production"]["n"] == report["policies"]["offensive_language"]["count"]
    # The scores themselves did not drift: only the labels tell.
    assert not {c for c, _, _ in violated(report)} & {"psi", "js", "ks"}


def test_labels_without_a_labelled_baseline_are_reported_with_a_note(
    baseline: dict[str, Any],
) -> None:
    recs = list(records(PRODUCTION_N, 3))
    report = compare(baseline, Observations.from_records(recs), labels=labels_of(recs))
    assert report["ok"]
    assert report["labelled"]["offensive_language"]["baseline"] is None
    assert any("no labelled metrics" in n for n in report["notes"])


def test_another_model_version_is_noted(baseline: dict[str, Any]) -> None:
    recs = list(records(PRODUCTION_N, 4))
    for r in recs[:10]:
        r["model"] = {"name": "synthetic", "version": "2"}
    report = compare(baseline, Observations.from_records(recs))
    assert any("synthetic 2 scored 10 records" in n for n in report["notes"])


def test_select_by_model_and_time_window() -> None:
    recs = list(records(10, 5))  # timestamps 1 s apart from 2023-11-14T22:13:20Z
    recs[0]["model"] = {"name": "other", "version": "1"}
    recs[1] = {"id": "bad", "status": "error", "timestamp": recs[1]["timestamp"]}
    assert [r["id"] for r in select(recs, model="synthetic")] == [f"ad-{i}" for i in range(2, 10)]
    assert len(list(select(recs, model="synthetic:1"))) == 8
    assert list(select(recs, model="synthetic:2")) == []
    since = datetime(2023, 11, 14, 22, 13, 23, tzinfo=UTC)
    window = select(recs, since=since, until=since + timedelta(seconds=2))
    assert [r["id"] for r in window] == ["ad-3", "ad-4"]


def test_threshold_overrides() -> None:
    t = Thresholds().with_overrides(["psi=0.3", "min_samples=50"])
    assert (t.psi, t.min_samples, t.js) == (0.3, 50, 0.2)
    assert isinstance(t.min_samples, int)
    with pytest.raises(ValueError, match="bad threshold"):
        Thresholds().with_overrides(["nope=1"])


def test_html_embeds_the_plots(baseline: dict[str, Any]) -> None:
    report = report_of(baseline, Traffic(drop="audio"), n=300)
    page = render_html(report)
    plots = page.count("data:image/png;base64,")
    # presence + flag rates + one per judged-or-not distribution with production values
    with_values = sum("bins" in e for g in ("policies", "inputs") for e in report[g].values())
    assert plots == 2 + with_values
    assert "modality audio: presence rate" in page


# --- the baseline from real scoring -------------------------------------------------------


@pytest.fixture(scope="module")
def text_model(tiny_bert_dir: Path) -> AdPolicyEnsemble:
    config = small_config_json(
        tiny_bert_dir,
        encoders={"text": {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16}},
        policies=[
            {"name": "offensive_language", "heads": ["text"], "calibrated": True},
            {"name": "hate_speech", "heads": ["text"], "calibrated": True, "threshold": 0.3},
        ],
    )
    return build_ensemble(ModelConfig.from_json(config), seed=0)


@pytest.fixture(scope="module")
def text_scorer(text_model: AdPolicyEnsemble) -> Scorer:
    return Scorer(text_model, batch_size=4)


def _write_ads(path: Path, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    words = [
        "buy",
        "now",
        "free",
        "sale",
        "offer",
        "damn",
        "cheap",
        "new",
        "best",
        "limited",
        "shoes",
        "coffee",
    ]
    ads: list[dict[str, Any]] = [
        {
            "id": f"v{i}",
            "text": " ".join(rng.choice(words, int(rng.integers(2, 30)))),
            "labels": {"offensive_language": int(i % 3 == 0), "hate_speech": 0},
        }
        for i in range(n)
    ]
    ads.append({"id": "broken", "image": "no_such_file.png"})
    path.write_text("".join(json.dumps(a) + "\n" for a in ads))
    return ads


def test_pipeline_records_match_offline_scoring(text_scorer: Scorer, tmp_path: Path) -> None:
    ads = _write_ads(tmp_path / "val.jsonl", 9)
    recs = list(Pipeline(text_scorer).records(ads, base_dir=tmp_path, batch_size=4))
    offline = text_scorer.score(ads, base_dir=tmp_path)
    assert [r["id"] for r in recs] == [r["id"] for r in offline]
    for rec, res in zip(recs, offline, strict=True):
        assert rec["status"] == res["status"]
        if res["status"] == "ok":
            for policy, score in rec["scores"].items():
                assert score == pytest.approx(res["policies"][policy]["score"], abs=1e-6)
            assert rec["flags"] == res["flags"]
            assert rec["stats"]["text_tokens"] <= 16
            assert rec["presence"]["text"]
    assert recs[-1]["http_status"] == 400


def test_baseline_from_labelled_data_and_the_manifest_round_trip(
    text_scorer: Scorer, tmp_path: Path
) -> None:
    ads = _write_ads(tmp_path / "val.jsonl", 30)
    pipeline = Pipeline(text_scorer)
    recs = list(pipeline.records(read_manifest(tmp_path / "val.jsonl"), base_dir=tmp_path))
    labels = labels_of(ads)
    base = summarize(Observations.from_records(recs), labels=labels)
    assert (base["records"], base["errors"], base["scored"]) == (31, 1, 30)
    assert base["presence"] == {"text": 1.0, "image": 0.0, "audio": 0.0, "video": 0.0}
    assert set(base["policies"]) == {"offensive_language", "hate_speech"}
    assert base["policies"]["offensive_language"]["scores"]["count"] == 30
    assert {"text_chars", "text_tokens"} == set(base["inputs"])
    assert base["labelled"]["offensive_language"]["n"] == 30
    assert base["labelled"]["offensive_language"]["positives"] == 10
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps({"format": "x", "baseline": None}))
    with pytest.raises(ValueError, match="no baseline"):
        load_baseline(artifact)
    attach_baseline(artifact, base)
    assert load_baseline(artifact) == json.loads(json.dumps(base))
    assert json.loads((artifact / "manifest.json").read_text())["format"] == "x"


def test_cli_baseline_from_a_checkpoint(
    text_model: AdPolicyEnsemble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_pretrained(text_model, tmp_path / "checkpoint")
    _write_ads(tmp_path / "val.jsonl", 12)
    out = tmp_path / "out" / "baseline.json"
    args = [
        "monitor",
        "baseline",
        "--model",
        str(checkpoint),
        "--data",
        str(tmp_path / "val.jsonl"),
    ]
    assert main([*args, "-o", str(out), "--batch-size", "5"]) == 0
    base = load_baseline(out)
    assert (base["scored"], base["errors"]) == (12, 1)
    assert base["labelled"]["offensive_language"]["n"] == 12
    assert base["source"]["model"] == str(checkpoint)
    assert "12 ads scored (1 errors)" in capsys.readouterr().out
    assert main(args) == 2  # neither -o nor --attach


def test_baseline_of_an_artifact_matches_its_checkpoint_and_attaches(
    text_model: AdPolicyEnsemble, text_scorer: Scorer, tmp_path: Path
) -> None:
    artifact = export_model(text_model, tmp_path / "artifact", ExportOptions(batch_sizes=(1, 3)))
    ads = _write_ads(tmp_path / "val.jsonl", 8)
    traced = list(Pipeline.load(artifact).records(ads, base_dir=tmp_path, batch_size=3))
    eager = list(Pipeline(text_scorer).records(ads, base_dir=tmp_path, batch_size=3))
    for a, b in zip(traced, eager, strict=True):
        assert a.get("scores", {}).keys() == b.get("scores", {}).keys()
        for policy, score in a.get("scores", {}).items():
            assert score == pytest.approx(b["scores"][policy], abs=1e-5)
        assert a.get("stats") == b.get("stats")
    args = ["monitor", "baseline", "--model", str(artifact), "--data", str(tmp_path / "val.jsonl")]
    assert main([*args, "--attach"]) == 0
    base = load_baseline(artifact)
    assert base["scored"] == 8
    assert base["source"]["model"] == str(artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["baseline"] == base
    assert Pipeline.load(artifact).scorer.preparer.input_names  # the checksum still verifies


# --- the command line ---------------------------------------------------------------------


def _capture(path: Path, traffic: Traffic, n: int = PRODUCTION_N) -> Path:
    writer = CaptureWriter(path, max_bytes=50_000, backups=20)  # rotates: all files are read
    recs = list(records(n, 7, traffic))
    for start in range(0, n, 25):
        writer.write(recs[start : start + 25])
    return path


def test_cli_report_exit_status_and_files(
    baseline: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_file = tmp_path / "baseline.json"
    base_file.write_text(json.dumps(baseline))
    calm = _capture(tmp_path / "calm" / "capture.jsonl", Traffic())
    args = ["monitor", "report", "--baseline", str(base_file), "-o"]
    assert main([*args, str(tmp_path / "r0"), "--capture", str(calm)]) == 0
    assert json.loads((tmp_path / "r0" / "violations.json").read_text()) == []

    shifted = _capture(tmp_path / "shifted" / "capture.jsonl", Traffic(drop="text"))
    assert len(list(shifted.parent.iterdir())) > 2  # rotated backups
    assert main([*args, str(tmp_path / "r1"), "--capture", str(shifted)]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION modality text: presence rate" in out
    violations = json.loads((tmp_path / "r1" / "violations.json").read_text())
    assert {(v["check"], v["name"]) for v in violations} == {("presence_rate", "text")}
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["production"]["records"] == PRODUCTION_N
    assert "data:image/png;base64," in (tmp_path / "r1" / "report.html").read_text()

    relaxed = ["--threshold", "presence_change=1.0"]
    assert main([*args, str(tmp_path / "r2"), "--capture", str(shifted), *relaxed]) == 0
    assert main([*args, str(tmp_path / "r3"), "--capture", str(tmp_path / "none.jsonl")]) == 2
    assert main([*args, str(tmp_path / "r5"), "--capture", str(calm), "--model", "other"]) == 2
    window = ["--since", "2023-11-14T22:13:20", "--until", "2023-11-14T22:16:40Z"]
    assert main([*args, str(tmp_path / "r6"), "--capture", str(calm), *window]) == 0
    report = json.loads((tmp_path / "r6" / "report.json").read_text())
    assert report["production"]["records"] == 200
    assert main([*args, str(tmp_path / "r4"), "--capture", str(calm), "--threshold", "x=1"]) == 2


def test_cli_report_with_labels(tmp_path: Path) -> None:
    base_file = tmp_path / "baseline.json"
    base_file.write_text(json.dumps(baseline_of(labelled=True)))
    blind = list(records(PRODUCTION_N, 2, Traffic(informative=False)))
    CaptureWriter(tmp_path / "c.jsonl").write(blind)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(json.dumps({"id": r["id"], "labels": r["labels"]}) + "\n" for r in blind)
    )
    assert read_labels(labels) == labels_of(blind)
    code = main(
        [
            "monitor",
            "report",
            "--baseline",
            str(base_file),
            "--capture",
            str(tmp_path / "c.jsonl"),
            "--labels",
            str(labels),
            "-o",
            str(tmp_path / "r"),
        ]
    )
    assert code == 1
    violations = json.loads((tmp_path / "r" / "violations.json").read_text())
    assert ("f1_drop", "offensive_language") in {(v["check"], v["name"]) for v in violations}
    assert "Quality against labels" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--bins", "1"], "--bins: must be at least 2"), (["--sample-size", "0"], "at least 1")],
)
def test_baseline_settings_that_blind_or_break_the_report_are_usage_errors(
    tmp_path, capsys, option, message
) -> None:
    """One bin never drifts (PSI and JS stay 0); a sample of 0 failed only at report time."""
    from ensemble.cli import main

    with pytest.raises(SystemExit) as usage:
        main(["monitor", "baseline", "--data", "x.jsonl", "-o", str(tmp_path / "b.json"), *option])
    assert usage.value.code == 2
    assert message in capsys.readouterr().err


def test_labelled_ads_sharing_an_id_are_warned_of(caplog) -> None:
    """Labels are joined to scores by id: 30 labelled ads on 5 ids counted as 5, silently."""
    from serve.monitor.quality import labels_of

    ads = [{"id": f"a{i % 5}", "labels": {"offensive_language": i % 2}} for i in range(30)]
    with caplog.at_level("WARNING", logger="serve.monitor.quality"):
        assert len(labels_of(ads)) == 5
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "25 labelled ads repeat an earlier one's id"
    ]
