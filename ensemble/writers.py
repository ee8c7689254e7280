"""Writing result rows as they come: JSONL, JSON, CSV or Parquet (chosen by the file suffix).

JSONL keeps the nested rows, one a line, flushed as written; JSON the same rows as one array
(what the reader takes from a ``.json`` file), into ``<name>.partial`` renamed when complete;
CSV one flat row per ad (:func:`ensemble.postprocess.flatten`) under a fixed header, flushed as
written; Parquet the flat rows in row groups, into ``<name>.partial`` renamed when complete.
Memory holds at most one row group. A run killed halfway leaves a JSONL or CSV file that
``resume=True`` continues:
:func:`written_ids` reads the ids already there (dropping a last line cut by the kill) and the
writer appends. Parquet cannot be appended to, so it cannot be resumed.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ensemble.postprocess import flatten
from ensemble.rows import Row

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
RESUMABLE = (".jsonl", ".csv")
LEADING = ("id", "status", "model", "warnings", "error", "decision", "flags")


def flat_columns(policies: Sequence[str], measurements: Sequence[str]) -> list[str]:
    """The columns of a flat (CSV / Parquet) results file, in order."""
    per_policy = [f"{p}.{k}" for p in policies for k in ("score", "flag", "status", "decision")]
    return [*LEADING, *per_policy, *measurements]


def output_format(output: str | Path) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported output format {suffix!r}; use one of {FORMATS}")
    return suffix


def check_not_input(ads: str | Path, output: str | Path) -> None:
    """Refuses an ``output`` that is the ads file itself (a link to it too): opening it for
    writing would empty it before a line is read.

    Raises:
        ValueError: Naming the output.
    """
    if Path(output).exists() and os.path.samefile(ads, output):
        raise ValueError(f"the output {str(output)!r} is the ads file: it would be emptied")


class RowWriter:
    """Writes rows to a results file as they are produced (a context manager).

    Args:
        output: The file; its suffix picks the format.
        columns: The flat columns (:func:`flat_columns`), for CSV and Parquet.
        append: Continue an existing JSONL / CSV file (``--resume``).
        row_group: Rows per Parquet row group.
    """

    def __init__(
        self,
        output: str | Path,
        columns: Sequence[str],
        *,
        append: bool = False,
        row_group: int = 4096,
    ) -> None:
        self.path = Path(output)
        self.format = output_format(self.path)
        if append and self.format not in RESUMABLE:
            raise ValueError(f"{self.format} results cannot be resumed; use .jsonl or .csv")
        self.columns = list(columns)
        self.row_group = row_group
        self.pending: list[dict[str, Any]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] | None = None
        self.parquet: Any = None
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.format == ".parquet":
            return
        if self.format == ".json":
            self.file = self.partial.open("w", encoding="utf-8")
            self.file.write("[")
            self.rows = 0
            return
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self.file = self.path.open("w" if fresh else "a", encoding="utf-8", newline="")
        if self.format == ".csv":
            self.csv = csv.DictWriter(self.file, self.columns, restval="", extrasaction="raise")
            if fresh:
                self.csv.writeheader()

    def write(self, row: Row) -> None:
        if self.format == ".parquet":
            self.pending.append(flatten(row))
            if len(self.pending) >= self.row_group:
                self._flush_group()
            return
        assert self.file is not None
        if self.format == ".csv":
            self.csv.writerow(flatten(row))
        elif self.format == ".json":
            self.file.write(("," if self.rows else "") + "\n" + json.dumps(row))
            self.rows += 1
        else:
            self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def _flush_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet is None:
            fields = [pa.field(name, _arrow_type(name, pa)) for name in self.columns]
            self.parquet = pq.ParquetWriter(self.partial, pa.schema(fields))
        table = pa.Table.from_pylist(self.pending, schema=self.parquet.schema)
        self.parquet.write_table(table)
        self.pending = []

    def close(self) -> None:
        if self.file is not None:
            if self.format == ".json":
                self.file.write("\n]\n")
            self.file.close()
            if self.format == ".json":
                os.replace(self.partial, self.path)
            return
        if self.pending or self.parquet is None:
            self._flush_group()
        self.parquet.close()
        os.replace(self.partial, self.path)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _arrow_type(name: str, pa: Any) -> Any:
    if name in LEADING or name.endswith((".status", ".decision")):
        return pa.string()
    return pa.bool_() if name.endswith(".flag") else pa.float64()


def written_ids(output: str | Path) -> Counter[str]:
    """How many rows of each id a JSONL or CSV results file already holds (none when there is
    no file), after cutting off a last line left incomplete by a killed run. Counted, not a
    set: an ads file may repeat an id, and only as many of its ads as were written are done."""
    path = Path(output)
    if output_format(path) not in RESUMABLE:
        raise ValueError(f"{path.suffix} results cannot be resumed; use .jsonl or .csv")
    if not path.exists():
        return Counter()
    with path.open("rb+") as f:
        size = end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - (1 << 16))
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            f.truncate(end)
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            return Counter(row["id"] for row in csv.DictReader(f))
        return Counter(json.loads(line)["id"] for line in f if line.strip())
