"""``adpolicy score``: a run killed with SIGKILL midway, then ``--resume``, loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensemble.cli.score import EXIT_AD_ERRORS
from ensemble.pretrained import save_pretrained

REPO = Path(__file__).resolve().parents[3]
ADS = 3000
KILL_AT = 800  # rows written when the run is killed


def _score(model: Path, ads: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ensemble.cli", "score", str(ads), "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [*command, "--model", str(model), "--no-progress", "--batch-size", "8", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _scores(path: Path) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an id was written twice"
    return {r["id"]: {n: e["score"] for n, e in r.get("policies", {}).items()} for r in rows}


@pytest.mark.slow
def test_kill_9_then_resume_writes_every_id_once(small_model, tmp_path) -> None:
    model = save_pretrained(small_model, tmp_path / "model")
    ads = tmp_path / "ads.jsonl"
    lines = [
        json.dumps({"id": f"ad-{i}", "text": f"offer number {i}, buy now"}) for i in range(ADS)
    ]
    lines[-5] = "{broken"  # an error row too, after the kill
    ads.write_text("\n".join(lines) + "\n")
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    assert _score(model, ads, whole).wait(600) == EXIT_AD_ERRORS

    run = _score(model, ads, cut)
    while not cut.exists() or cut.stat().st_size < whole.stat().st_size * KILL_AT // ADS:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    written = len(cut.read_text().splitlines())
    assert 0 < written < ADS
    assert _score(model, ads, cut, "--resume").wait(600) == EXIT_AD_ERRORS
    resumed, expected = _scores(cut), _scores(whole)
    assert sorted(resumed) == sorted(expected)
    for ad_id, scores in expected.items():
        # rows round scores to 6 decimals: a pass of other ads (the resumed run's batches
        # differ) moves a raw score by ~1e-9, which can round one step (1e-6) the other way
        assert resumed[ad_id] == pytest.approx(scores, abs=1.5e-6), ad_id
