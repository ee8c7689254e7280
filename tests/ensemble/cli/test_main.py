"""The ``adpolicy`` entry point: a reader that stops reading ends the command quietly."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ensemble.cli as cli
from ensemble.pretrained import save_pretrained

REPO = Path(__file__).resolve().parents[3]


def test_a_closed_stdout_ends_score_without_a_traceback_and_keeps_its_rows(
    small_model, tmp_path
) -> None:
    model = save_pretrained(small_model, tmp_path / "model")
    ads, out = tmp_path / "ads.jsonl", tmp_path / "out.jsonl"
    ads.write_text(
        "".join(json.dumps({"id": f"ad-{i}", "text": "buy now"}) + "\n" for i in range(5))
    )
    command = [sys.executable, "-m", "ensemble.cli", "score", str(ads), "-o", str(out)]
    run = subprocess.Popen(
        [*command, "--model", str(model), "--no-progress"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout is not None
    run.stdout.close()  # as `| head -0` does: the summary's first write finds no reader
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == cli.SIGPIPE_EXIT
    assert b"Traceback" not in stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [
        f"ad-{i}" for i in range(5)
    ]


def test_a_broken_pipe_that_is_not_stdout_is_a_real_error(monkeypatch) -> None:
    def lost_worker(_: argparse.Namespace) -> int:
        raise BrokenPipeError("a child process went away")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=lost_worker, verbose=False)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(BrokenPipeError, match="child process"):
        cli.main([])
