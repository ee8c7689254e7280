"""Rows written as they come, and resumed after a kill."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ensemble.rows import AdError, ModelInfo, Row, error_row
from ensemble.writers import RowWriter, flat_columns, written_ids

MODEL: ModelInfo = {"name": "m", "version": "1"}
COLUMNS = flat_columns(["p"], ["x.y"])


def ok(ad_id: str) -> Row:
    return {
        "id": ad_id,
        "status": "ok",
        "model": MODEL,
        "warnings": ["image: transparent pixels flattened onto white"],
        "decision": "allow",
        "flags": [],
        "policies": {
            "p": {
                "status": "scored",
                "score": 0.25,
                "flag": False,
                "threshold": 0.5,
                "decision": "allow",
            }
        },
        "modalities": {},
        "measurements": {"x.y": 1.5},
    }


def bad(ad_id: str) -> Row:
    return error_row(ad_id, AdError.of("text", "expected a string, got int"), MODEL)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_drops_a_cut_last_line_and_appends(tmp_path, suffix) -> None:
    out = tmp_path / f"rows{suffix}"
    with RowWriter(out, COLUMNS) as writer:
        writer.write(ok("a"))
        writer.write(bad("b\nwith a newline"))
    with out.open("a") as f:
        f.write('{"id": "c", "sta' if suffix == ".jsonl" else "c,o")  # killed mid-row
    assert written_ids(out) == {"a": 1, "b\nwith a newline": 1}
    with RowWriter(out, COLUMNS, append=True) as writer:
        writer.write(ok("c"))
    if suffix == ".jsonl":
        ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    else:
        ids = pd.read_csv(out)["id"].tolist()
    assert ids == ["a", "b\nwith a newline", "c"]


def test_parquet_is_written_in_row_groups_and_renamed_when_complete(tmp_path) -> None:
    out = tmp_path / "rows.parquet"
    with RowWriter(out, COLUMNS, row_group=2) as writer:
        for n in range(5):
            writer.write(ok(str(n)) if n % 2 else bad(str(n)))
        assert not out.exists()  # only the .partial file while writing
    assert pq.ParquetFile(out).num_row_groups == 3
    frame = pd.read_parquet(out)
    assert frame["status"].tolist() == ["error", "ok", "error", "ok", "error"]
    assert frame["p.score"].tolist()[1] == 0.25
    with pytest.raises(ValueError, match="cannot be resumed"):
        written_ids(out)


def test_json_results_are_one_array_that_the_reader_reads_back(tmp_path) -> None:
    from ensemble.reader import read_ads

    out = tmp_path / "results.json"
    with RowWriter(out, COLUMNS) as writer:
        writer.write(ok("a"))
        assert not out.exists()  # a .partial until complete, as for Parquet
        writer.write(bad("b"))
    rows = json.loads(out.read_text())
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [r.ad["id"] for r in read_ads(out)] == ["a", "b"]
    with RowWriter(tmp_path / "empty.json", COLUMNS):
        pass
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    with pytest.raises(ValueError, match="cannot be resumed"):
        RowWriter(out, COLUMNS, append=True)
