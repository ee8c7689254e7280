"""THE reader of ad files: every command that reads ads reads them here.

Formats, chosen by the suffix once ``.gz`` / ``.zst`` is taken off:

* JSON Lines (``.jsonl``, ``.ndjson``, and ``.json`` / ``.txt`` / no suffix unless the file
  starts with ``[``): the file is split on ``b"\\n"`` only (never on Unicode line or paragraph
  separators inside a record) and each line is decoded on its own;
* a JSON array (``.json`` starting with ``[``; or one object): held in memory, so bounded by
  ``max_record_bytes``; use JSON Lines for big files;
* CSV with a header (columns ``id``, ``text``, ``image``, ``audio``, ``video``; ``labels`` and
  ``meta`` cells as JSON); an empty cell is an absent field;
* Parquet (the same columns), read in row groups.

Each ad comes out as a :class:`~ensemble.rows.Record`; one that cannot be read (not UTF-8, not
JSON, a key given twice, not an object, nested too deep, too long, a lone surrogate) carries an
error naming its line and the problem, and the reading goes on. A UTF-8 byte-order mark that
starts a file is skipped. A file cut short (a truncated ``.gz``) ends with
one such record. Only a file that cannot be opened at all raises.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from encoders.media import MediaLimits
from ensemble.rows import AdError, Record

COMPRESSIONS = (".gz", ".zst")
JSON_SUFFIXES = ("", ".jsonl", ".ndjson", ".json", ".txt")
SUFFIXES = (*JSON_SUFFIXES, ".csv", ".parquet")
JSON_CELLS = ("labels", "meta")
_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class _RefusedJSONError(ValueError):
    """JSON that Python's decoder accepts and JSON (RFC 8259) does not mean as an ad."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise _RefusedJSONError(
                f"the key {key!r} is given twice: which one to score is ambiguous"
            )
        value[key] = item
    return value


def _no_constant(name: str) -> Any:
    raise _RefusedJSONError(f"not valid JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Python reads it as inf
        raise _RefusedJSONError(
            f"not usable JSON: the number {text[:40]} is beyond a float's range"
        )
    return value


def read_ads(path: str | Path, *, limits: MediaLimits | None = None) -> Iterator[Record]:
    """Stream the ads of a file, one :class:`Record` per line (JSONL, CSV), element (JSON
    array) or row (Parquet), in order.

    Raises:
        ValueError: An unsupported suffix.
        OSError: The file cannot be opened.
    """
    limits = limits or MediaLimits()
    path = Path(path)
    kind = ad_format(path)
    if kind == ".parquet":
        yield from read_part(path, kind, limits=limits)
        return
    with _open(path) as stream:
        try:
            start = stream.peek(4)[:4]
            if start[:3] == _BOM:  # Windows tools start UTF-8 with one
                stream.read(len(_BOM))
            elif start[:2] in UTF16_BOMS:  # a UTF-32 mark starts as UTF-16's
                raise ValueError(
                    "the file is UTF-16 or UTF-32 (its byte-order mark); save it as UTF-8"
                )
            if kind == ".csv":
                yield from _csv(stream, limits)
            elif kind == ".json" and stream.peek(1 << 16).lstrip()[:1] == b"[":
                yield from _array(stream, limits)
            else:
                yield from _jsonl(stream, limits)
        except (OSError, EOFError, ValueError) as err:  # a cut or corrupt compressed stream
            problem = f"the file cannot be read past this point: {err}"
            yield Record(None, "end-of-file", AdError.of("file", problem))


def read_part(
    source: str | Path | IO[bytes],
    kind: str,
    *,
    first: int = 1,
    rows: range | None = None,
    limits: MediaLimits | None = None,
) -> Iterator[Record]:
    """The ads of one part of an uncompressed JSON Lines or Parquet file, numbered as in the
    whole file (what a distributed run reads per block; :func:`read_ads` reads whole files).

    Args:
        source: JSON Lines: a stream of whole lines, the part alone; Parquet: the file.
        kind: ``".jsonl"`` or ``".parquet"`` (:func:`ad_format`).
        first: JSON Lines: the number in the file of the stream's first line.
        rows: Parquet: the rows to read (0-based positions in the file; default all).
    """
    limits = limits or MediaLimits()
    if kind == ".parquet":
        yield from _parquet(source, rows)
        return
    if kind != ".jsonl" or isinstance(source, str | Path):
        raise ValueError(f"a part is a JSON Lines stream or a Parquet file, not {kind} {source}")
    yield from _jsonl(source, limits, first)


def check_ads_file(path: str | Path) -> None:
    """Refuses an ads file before anything else is touched (a model loaded, an output opened,
    a request sent): a format no reader takes (``ValueError``) or no file there (``OSError``)."""
    ad_format(Path(path))
    Path(path).stat()


def ad_format(path: Path) -> str:
    """The format suffix of an ads file (``.jsonl``, ``.csv``, ...), compression aside."""
    name = path.name.lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    suffix = Path(name).suffix
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported ads format {suffix!r}; use one of {SUFFIXES[1:]}")
    if suffix == ".parquet" and name != path.name.lower():
        raise ValueError(f"{path}: Parquet compresses itself; do not compress the file")
    # a ``.json`` file may hold one array of ads; every other JSON suffix is one ad a line,
    # whatever its first line looks like (a JSONL line ``[]`` is a bad ad, not an array)
    return suffix if suffix in (".csv", ".parquet", ".json") else ".jsonl"


def _open(path: Path) -> io.BufferedReader:
    raw = path.open("rb")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw))
    if suffix == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader)
    return io.BufferedReader(raw)


def _lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """The lines of a stream without their ``\\n``; None for a line longer than ``limit``
    (skipped without holding it)."""
    while line := stream.readline(limit + 2):
        ended = line.endswith(b"\n")
        content = line[:-1] if ended else line
        if len(content) <= limit:
            yield content.removesuffix(b"\r")
            continue
        while not ended and (more := stream.readline(1 << 20)):
            ended = more.endswith(b"\n")
        yield None


def _too_long(where: str, limits: MediaLimits, field: str = "ad") -> AdError:
    return AdError.of(field, f"{where}: longer than {limits.max_record_bytes} bytes", 413)


def _jsonl(stream: IO[bytes], limits: MediaLimits, first: int = 1) -> Iterator[Record]:
    for number, line in enumerate(_lines(stream, limits.max_record_bytes), first):
        fallback = f"line-{number}"
        if line is None:
            yield Record(None, fallback, _too_long(f"line {number}", limits))
        elif line.strip():
            ad, error = parse_object(line, f"line {number}", limits)
            yield Record(ad, fallback, error)


def _array(stream: IO[bytes], limits: MediaLimits) -> Iterator[Record]:
    data = stream.read(limits.max_record_bytes + 1)
    document, error = parse_json(data, "the JSON document", limits)
    if error is not None:
        yield Record(None, "item-1", error)
        return
    for number, ad in enumerate(document if isinstance(document, list) else [document], 1):
        problem = _object_problem(ad, f"item {number}")
        yield Record(ad, f"item-{number}", problem)


def parse_object(data: bytes | str, where: str, limits: MediaLimits) -> tuple[Any, AdError | None]:
    """Like :func:`parse_json`, and the value must be a JSON object (one ad)."""
    value, error = parse_json(data, where, limits)
    if error is None:
        error = _object_problem(value, where)
    return (None, error) if error is not None else (value, None)


def _object_problem(value: Any, where: str) -> AdError | None:
    if isinstance(value, dict):
        return None
    return AdError.of("ad", f"{where}: expected a JSON object, got {json_kind(value)}")


def parse_json(
    data: bytes | str, where: str, limits: MediaLimits, *, field: str = "ad"
) -> tuple[Any, AdError | None]:
    """Decode one JSON record: ``(value, None)``, or ``(None, error)`` naming ``where`` and the
    problem (too long, not UTF-8, not JSON, a key given twice in one object, ``NaN`` or
    ``Infinity``, a number too big for an integer or a float, nested too deep, a lone
    surrogate). Shared by the files and the server's request bodies; a UTF-8 byte-order mark
    before it is skipped (RFC 8259 lets a reader ignore one; Windows tools write one)."""
    if len(data) > limits.max_record_bytes:
        return None, _too_long(where, limits, field)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        text = text.removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        return None, AdError.of(field, f"{where}: not UTF-8 (byte {err.start}: {err.reason})")
    try:
        value = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite
        )
    except _RefusedJSONError as err:
        return None, AdError.of(field, f"{where}: {err}")
    except json.JSONDecodeError as err:
        return None, AdError.of(
            field,
            f"{where}: not valid JSON: {err.msg.removesuffix(' at')} at line {err.lineno} "
            f"column {err.colno}",
        )
    except RecursionError:
        return None, _too_deep(where, limits, field)
    except ValueError as err:  # an integer of more digits than Python converts
        problem = str(err).split(";")[0]  # not Python's advice to raise its own limit
        return None, AdError.of(field, f"{where}: not usable JSON: {problem}")
    error = structure_error(value, where, limits, field=field)
    return (None, error) if error is not None else (value, None)


def structure_error(
    value: Any, where: str, limits: MediaLimits, *, field: str = "ad"
) -> AdError | None:
    """The error of decoded JSON nested too deep or holding a string UTF-8 cannot hold."""
    problem = _structure_problem(value, limits.max_json_depth)
    return AdError.of(field, f"{where}: {problem}") if problem is not None else None


def _too_deep(where: str, limits: MediaLimits, field: str = "ad") -> AdError:
    return AdError.of(field, f"{where}: nested deeper than {limits.max_json_depth} levels")


def _structure_problem(value: Any, max_depth: int) -> str | None:
    """Why a decoded value cannot be an ad's data: too deep, or a string UTF-8 cannot hold."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:
                return f"holds a lone surrogate (\\u{ord(item[err.start]):04x}), not valid Unicode"
    return None


def json_kind(value: Any) -> str:
    """How an error names a JSON value's type (\"an array\", \"a string\", ...)."""
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _csv(stream: IO[bytes], limits: MediaLimits) -> Iterator[Record]:
    """CSV rows as ads; a row spanning a bad line (not UTF-8, too long) is an error."""
    csv.field_size_limit(limits.max_record_bytes)
    bad: dict[int, str] = {}

    def decoded() -> Iterator[str]:
        for number, line in enumerate(_lines(stream, limits.max_record_bytes), 1):
            if line is None:
                bad[number] = f"line {number}: longer than {limits.max_record_bytes} bytes"
                yield "\n"
                continue
            try:
                yield line.decode("utf-8") + "\n"
            except UnicodeDecodeError as err:
                bad[number] = f"line {number}: not UTF-8 (byte {err.start}: {err.reason})"
                yield "\n"

    reader = csv.reader(decoded(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as err:
        raise ValueError(f"the CSV header cannot be read: {err}") from None
    if bad or len(set(header)) != len(header) or not header:
        raise ValueError(f"the CSV header is unreadable or repeats a column: {header}")
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield Record(None, f"line-{start}", AdError.of("ad", f"line {start}: {err}"))
            start = reader.line_num + 1
            continue
        fallback = f"line-{start}"
        problems = [bad.pop(n) for n in range(start, reader.line_num + 1) if n in bad]
        if problems:
            yield Record(None, fallback, AdError.of("ad", "; ".join(problems)))
        elif len(cells) > len(header):
            problem = f"line {start}: {len(cells)} cells for {len(header)} columns"
            yield Record(None, fallback, AdError.of("ad", problem))
        elif any(c.strip() for c in cells):
            yield _csv_record(dict(zip(header, cells, strict=False)), start, limits)
        start = reader.line_num + 1


def _csv_record(cells: Mapping[str, str], number: int, limits: MediaLimits) -> Record:
    ad: dict[str, Any] = {k: v for k, v in cells.items() if v != ""}
    for name in JSON_CELLS:
        if name in ad:
            ad[name], error = parse_object(ad[name], f"line {number} column {name}", limits)
            if error is not None:
                return Record(None, f"line-{number}", error)
    return Record(ad, f"line-{number}")


def _parquet(source: str | Path | IO[bytes], rows: range | None = None) -> Iterator[Record]:
    """The rows of a Parquet file (those in ``rows`` only), named ``row-N`` from 1; only the
    row groups holding them are read."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(source)
    rows = range(table.metadata.num_rows) if rows is None else rows
    start = 0
    for group in range(table.num_row_groups):
        end = start + table.metadata.row_group(group).num_rows
        if start < rows.stop and rows.start < end:
            for batch in table.iter_batches(batch_size=1024, row_groups=[group]):
                for row in batch.to_pylist():
                    if start in rows:
                        ad = {k: v for k, v in row.items() if v is not None}
                        yield Record(ad, f"row-{start + 1}")
                    start += 1
        start = end


def records_of(ads: Iterable[Any]) -> Iterator[Record]:
    """Ads already in memory as records (``"#N"`` the id of the N-th, from 0, without one).

    Raises:
        TypeError: ``ads`` is one ad (a mapping), a string or bytes, not a collection of ads.
    """
    if isinstance(ads, Mapping | str | bytes | bytearray) or not isinstance(ads, Iterable):
        raise TypeError(f"expected a list (or any iterable) of ads, got {type(ads).__name__}")
    for index, ad in enumerate(ads):
        yield ad if isinstance(ad, Record) else Record(ad, f"#{index}")
