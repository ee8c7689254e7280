"""The one reader of ad files: formats, compression, and one error record per bad line."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from encoders.media import MediaLimits
from ensemble.reader import parse_json, read_ads, read_part

ADS = [{"id": "a", "text": "one"}, {"text": "two\u2028still two"}]


def _read(path: Path, **limits: int) -> list[tuple[str, object, str | None]]:
    return [
        (r.id, r.ad, str(r.error) if r.error else None)
        for r in read_ads(path, limits=MediaLimits(**limits))
    ]


def _jsonl(ads: list[dict]) -> bytes:
    return b"".join(json.dumps(a, ensure_ascii=False).encode() + b"\n" for a in ads)


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("ads.jsonl", _jsonl),
        ("ads.jsonl.gz", lambda ads: gzip.compress(_jsonl(ads))),
        ("ads.jsonl.zst", lambda ads: zstandard.ZstdCompressor().compress(_jsonl(ads))),
        ("ads.json", lambda ads: json.dumps(ads).encode()),
    ],
)
def test_formats_give_the_same_ads(tmp_path, name, encode) -> None:
    path = tmp_path / name
    path.write_bytes(encode(ADS))
    rows = _read(path)
    assert [ad for _, ad, _ in rows] == ADS  # U+2028 inside a record does not split it
    assert rows[0][0] == "a"
    assert rows[1][0] in ("line-2", "item-2")


def test_csv_and_parquet(tmp_path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["one\nline two", None]})
    frame.to_csv(tmp_path / "ads.csv", index=False)
    frame.to_parquet(tmp_path / "ads.parquet")
    assert _read(tmp_path / "ads.csv") == [
        ("a", {"id": "a", "text": "one\nline two"}, None),
        ("b", {"id": "b"}, None),
    ]
    assert [ad for _, ad, _ in _read(tmp_path / "ads.parquet")] == [
        {"id": "a", "text": "one\nline two"},
        {"id": "b"},
    ]


def test_every_bad_line_is_its_own_error_and_reading_goes_on(tmp_path) -> None:
    path = tmp_path / "ads.jsonl"
    lines = [
        b'{"id": "ok", "text": "fine"}',
        b'{"text": "caf\xe9"}',  # Latin-1, not UTF-8
        b"{not json",
        b"[1, 2]",
        b'{"meta": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"text": "\\ud800"}',
        b'{"id": "twice", "text": "fine", "text": "vermin"}',  # Python keeps the last one
        b'{"text": "fine", "meta": NaN}',  # Python reads NaN; JSON has no such number
        b'{"text": "fine", "meta": 1e400}',  # Python reads inf
        b"x" * 300,
        b"   ",
        b'{"id": "last", "text": "fine"}\r',
    ]
    path.write_bytes(b"\n".join(lines))
    rows = _read(path, max_record_bytes=250)
    assert [i for i, _, _ in rows] == ["ok", *(f"line-{n}" for n in range(2, 13)), "last"]
    problems = [e for _, _, e in rows]
    assert problems[0] is None
    assert problems[-1] is None
    for number, fragment in [
        (2, "not UTF-8"),
        (3, "not valid JSON"),
        (4, "expected a JSON object, got an array"),
        (5, "nested deeper than 32 levels"),
        (6, "longer than 250 bytes"),
        (7, "longer than 250 bytes"),
        (8, "holds a lone surrogate"),
        (9, "the key 'text' is given twice"),
        (10, "not valid JSON: NaN is not a JSON number"),
        (11, "not usable JSON: the number 1e400 is beyond a float's range"),
        (12, "longer than 250 bytes"),
    ]:
        assert f"line {number}: {fragment}" in str(problems[number - 1])


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ads.jsonl", _jsonl(ADS)),
        ("ads.json", json.dumps(ADS).encode()),
        ("ads.csv", b"id,text\na,one\n"),
        ("ads.jsonl.gz", gzip.compress(_jsonl(ADS))),
    ],
)
def test_a_byte_order_mark_that_starts_a_file_is_skipped(tmp_path, name, data) -> None:
    path = tmp_path / name
    bom = b"\xef\xbb\xbf"
    path.write_bytes(
        gzip.compress(bom + gzip.decompress(data)) if name.endswith(".gz") else bom + data
    )
    rows = _read(path)
    assert rows[0][:2] == ("a", {"id": "a", "text": "one"})
    assert all(error is None for _, _, error in rows)


def test_the_first_part_of_a_distributed_run_skips_the_byte_order_mark() -> None:
    part = io.BufferedReader(io.BytesIO(b"\xef\xbb\xbf" + _jsonl(ADS)))
    records = list(read_part(part, ".jsonl", first=1))
    assert [(r.id, r.error) for r in records] == [("a", None), ("line-2", None)]


def test_a_request_body_may_start_with_a_byte_order_mark_too() -> None:
    value, error = parse_json('\ufeff{"id": "a"}'.encode(), "the body", MediaLimits())
    assert (value, error) == ({"id": "a"}, None)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_utf_16_or_32_file_is_one_error_saying_so(tmp_path, encoding) -> None:
    path = tmp_path / "ads.csv"
    path.write_bytes("id,text\na,one\n".encode(encoding))  # Python writes the mark
    ((_, ad, error),) = _read(path)
    assert ad is None
    assert "UTF-16 or UTF-32 (its byte-order mark); save it as UTF-8" in str(error)


def test_json_errors_read_plainly() -> None:
    limits = MediaLimits()
    _, cut = parse_json(b'{"text": "x', "line 1", limits)
    assert "Unterminated string starting at line 1 column 10" in str(cut)
    _, huge = parse_json(b'{"n": ' + b"9" * 5000 + b"}", "line 1", limits)
    assert "value has 5000 digits" in str(huge)
    assert "sys.set_int_max_str_digits" not in str(huge)


@pytest.mark.parametrize("copies", [1, 2000])
def test_a_cut_compressed_file_ends_with_one_error(tmp_path, copies) -> None:
    path = tmp_path / "ads.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(ADS * copies))[:-40])
    rows = _read(path)
    assert all(e is None for _, _, e in rows[:-1])
    assert "cannot be read past this point" in str(rows[-1][2])


def test_a_file_that_is_not_what_its_suffix_says_is_one_error(tmp_path) -> None:
    path = tmp_path / "ads.jsonl.gz"
    path.write_bytes(_jsonl(ADS))  # not gzip: the first read fails
    rows = _read(path)
    assert len(rows) == 1
    assert "cannot be read past this point" in str(rows[0][2])


def test_unknown_format_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unsupported ads format"):
        list(read_ads(tmp_path / "ads.xlsx"))


def test_a_jsonl_line_that_is_an_array_is_one_bad_ad_not_a_json_array(tmp_path) -> None:
    path = tmp_path / "ads.jsonl"
    path.write_bytes(b'[]\n{"id": "a", "text": "hi"}\n')
    records = list(read_ads(path))
    assert [r.id for r in records] == ["line-1", "a"]
    assert records[0].error is not None
    assert records[1].error is None
