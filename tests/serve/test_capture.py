"""Capture: records without media, size rotation, several processes appending to one file."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serve.capture import CaptureWriter, capture_files, capture_record, read_capture

RESULT = {
    "id": "ad-1",
    "status": "ok",
    "model": {"name": "adpolicy-default", "version": "0.1.0"},
    "flags": ["loudness"],
    "policies": {
        "offensive_language": {"status": "scored", "score": 0.12, "flag": False, "threshold": 0.5},
        "loudness": {"status": "scored", "score": 0.97, "flag": True, "threshold": 0.5},
        "adult": {"status": "untrained", "score": None, "flag": None, "threshold": 0.5},
        "flashing": {"status": "not_applicable", "score": None, "flag": None, "threshold": 0.5},
    },
    "modalities": {"audio": {"loudness": 0.97}},
    "measurements": {"loudness.lufs": -9.5},
}
MINIMAL = {"status": "ok", "timestamp": "2026-01-01T00:00:00.000Z"}  # with an id: a record
STATS = {"text_chars": 31.0, "text_tokens": 9.0, "audio_seconds": 3.0, "audio_rms_db": -4.2}


def test_record_holds_the_summary_and_no_media() -> None:
    record = capture_record(RESULT, STATS, timestamp=0.0)
    assert record["id"] == "ad-1"
    assert record["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert record["model"] == {"name": "adpolicy-default", "version": "0.1.0"}
    assert record["scores"] == {"offensive_language": 0.12, "loudness": 0.97}
    assert record["thresholds"] == {"offensive_language": 0.5, "loudness": 0.5}
    assert record["flags"] == ["loudness"]
    assert record["stats"] == STATS
    assert record["measurements"] == {"loudness.lufs": -9.5}
    assert record["presence"] == {"text": True, "image": False, "audio": True, "video": False}
    assert set(record) == {
        "capture_format", "id", "timestamp", "status", "model", "scores", "thresholds", "flags",
        "stats",
        "measurements", "presence",
    }  # fmt: skip


def test_record_of_a_failed_ad_and_an_aware_datetime() -> None:
    error = {"id": "bad", "status": "error", "http_status": 400,
             "errors": [{"field": "image", "error": "not an image"}]}  # fmt: skip
    record = capture_record(error, {}, timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert record["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert record["http_status"] == 400
    assert record["errors"] == error["errors"]
    assert "scores" not in record
    assert "model" not in record
    served = {**error, "model": {"name": "m", "version": "2"}}
    assert capture_record(served, {}, timestamp=0.0)["model"] == {"name": "m", "version": "2"}


def test_non_finite_statistics_are_left_out() -> None:
    record = capture_record(RESULT, {**STATS, "image_brightness": float("nan")}, timestamp=1.0)
    assert "image_brightness" not in record["stats"]
    assert record["presence"]["image"] is True  # the field was there, the statistic was not


def test_rotation_keeps_backups_and_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    writer = CaptureWriter(path, max_bytes=1000, backups=3)
    records = [{**MINIMAL, "id": f"r{i}", "pad": "x" * 25} for i in range(60)]
    for start in range(0, 60, 2):
        assert writer.write(records[start : start + 2]) == 2
    files = capture_files(path)
    assert [f.name for f in files] == [
        "capture.jsonl.3", "capture.jsonl.2", "capture.jsonl.1", "capture.jsonl",
    ]  # fmt: skip
    assert all(f.stat().st_size <= 1000 for f in files)
    ids = [r["id"] for r in read_capture(path)]
    assert ids == [r["id"] for r in records[-len(ids) :]]  # the newest kept, oldest dropped
    assert 20 < len(ids) < 60
    assert [r["id"] for r in read_capture(tmp_path)] == ids  # a directory works too


def test_no_backups_truncates(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "c.jsonl", max_bytes=300, backups=0)
    for i in range(20):
        writer.write([{"id": i, "pad": "y" * 50}])
    assert capture_files(tmp_path / "c.jsonl") == [tmp_path / "c.jsonl"]
    assert (tmp_path / "c.jsonl").stat().st_size <= 300


def test_unserialisable_records_are_dropped_not_raised(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "c.jsonl")
    written = writer.write(
        [{**MINIMAL, "id": 1}, {"id": 2, "bad": object()}, {"id": 3, "x": float("inf")}]
    )
    assert written == 1
    assert writer.dropped == 2
    assert [r["id"] for r in read_capture(tmp_path / "c.jsonl")] == [1]


def test_from_config() -> None:
    assert CaptureWriter.from_config(None) is None
    assert CaptureWriter.from_config({}) is None
    writer = CaptureWriter.from_config({"path": "/tmp/x/c.jsonl", "max_bytes": 10, "backups": 2})
    assert writer is not None
    assert (writer.max_bytes, writer.backups) == (10, 2)
    with pytest.raises(ValueError, match="max_bytes"):
        CaptureWriter("/tmp/x/c.jsonl", max_bytes=0)


def _append(path: str, worker: int, count: int) -> None:
    writer = CaptureWriter(path, max_bytes=200_000, backups=100)
    for seq in range(0, count, 2):
        # 6 KB lines: larger than PIPE_BUF, so only the lock keeps them whole.
        writer.write([{"worker": worker, "seq": s, "pad": "z" * 6000} for s in (seq, seq + 1)])


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append, args=(str(path), w, 150)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    files = capture_files(path)
    assert len(files) > 3  # rotation happened while the workers wrote
    lines = [line for f in files for line in f.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    assert len(records) == 600
    assert {(r["worker"], r["seq"]) for r in records} == {
        (w, s) for w in range(4) for s in range(150)
    }
    assert all(f.stat().st_size <= 200_000 for f in files)
    for w in range(4):  # each worker's lines stay in its own order
        assert [r["seq"] for r in records if r["worker"] == w] == list(range(150))


def test_lines_that_are_no_capture_record_are_skipped_naming_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad line crashed `monitor report` (an array, null scores, no timestamp with
    --since) or refused the whole report (a non-UTF-8 byte, a score "high"); it is skipped
    with a warning, as a line that is not JSON already was."""
    good = capture_record(RESULT, STATS, timestamp=0.0)
    bad = [
        b"[1, 2]",
        json.dumps({**good, "scores": None}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "timestamp"}).encode(),
        json.dumps({**good, "timestamp": "yesterday"}).encode(),
        json.dumps({**good, "timestamp": "2026-01-02T03:04:05"}).encode(),  # no time zone
        json.dumps({**good, "scores": {"x": "high"}}).encode(),
        json.dumps({**good, "model": None}).encode(),
        b'{"id": "caf\xe9"}',
        b"{}",
    ]
    path = tmp_path / "capture.jsonl"
    path.write_bytes(
        b"\n".join([json.dumps(good).encode(), *bad, json.dumps(good).encode()]) + b"\n"
    )
    with caplog.at_level("WARNING", logger="serve.capture"):
        records = list(read_capture(path))
    assert records == [good, good]
    skipped = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[1] for m in skipped] == [str(n) for n in range(2, 11)]
    assert skipped[0] == f"{path}:2: not a capture record (a JSON list, not an object), skipped"
    assert "scores is not a mapping of names to numbers" in skipped[1]
    assert "has no time zone" in skipped[4]
