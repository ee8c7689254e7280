"""Offline scoring on Ray Data: the local scoring loop in a pool of actors, one machine or many.

The input file is cut into blocks of whole ads (:func:`plan_blocks`: byte ranges of JSON Lines
cut at line ends, row ranges of Parquet; a compressed, CSV or JSON-array file is one block).
``map_batches`` hands each block to an actor of a pool; every actor loads the model once
(a checkpoint or an exported artifact) and runs THE reader (:func:`ensemble.reader.read_part`)
and THE loop (:meth:`ensemble.scoring.Scorer.iter_scores`) over its block, so the rows are
those of ``adpolicy score``: same ids (``line-N`` numbered in the whole file), same scores,
same error rows. :func:`write_results` writes one results file per block, ``part-NNNNNN``
after the block's index, into a temporary name renamed when complete.

Exactly once: Ray Data creates the pool's actors with ``max_restarts=-1`` and
``max_task_retries=-1``, so an actor that dies is restarted and the block it held is run
again; a block's rows leave its actor as one Arrow table (all or nothing), and its file's
name depends on the block alone, so a block written twice replaces itself (never two copies)
and a half-written file is never visible.

Ray is imported here only: ``adpolicy score`` without ``--engine ray`` never imports it.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoders.media import MediaLimits
from ensemble.reader import COMPRESSIONS, UTF16_BOMS, ad_format, read_ads, read_part
from ensemble.rows import Record
from ensemble.summary import Summary
from ensemble.writers import RowWriter, flat_columns, output_format

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import ray.data

    from ensemble.scoring import Scorer

log = logging.getLogger(__name__)

ADS_PER_BLOCK = 512
SCAN_BYTES = 16 << 20  # JSON Lines are scanned for line ends in pieces of this size
PART_FORMATS = (".jsonl", ".parquet")
COLUMNS = ("block", "id", "status", "row")
POLICIES_KEY, COLUMNS_KEY = "adpolicy.policies", "adpolicy.columns"  # schema metadata


def filesystem(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a local path or a URI (``s3://``, ``gs://``,
    ``hdfs://``, ...)."""
    import pyarrow.fs as pafs

    if "://" not in str(uri):
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    fs, path = pafs.FileSystem.from_uri(str(uri))
    return fs, path


def plan_blocks(source: str | Path, ads_per_block: int = ADS_PER_BLOCK) -> list[dict[str, Any]]:
    """Cut a file of ads into blocks of about ``ads_per_block`` ads, reading no ad.

    JSON Lines are scanned for line ends (one pass over the bytes, no parsing), Parquet cut in
    row ranges from its footer; other files (compressed, CSV, a JSON array) are one block.

    Returns:
        One dict per block: ``index``, ``uri`` (the file), ``kind`` (``".jsonl"``,
        ``".parquet"`` or ``"whole"``), ``start`` / ``stop`` (bytes of JSON Lines, rows of
        Parquet) and ``first`` (the number in the file of the block's first line).

    Raises:
        ValueError: An unsupported format or ``ads_per_block`` below 1.
        OSError: The file cannot be opened.
    """
    if ads_per_block < 1:
        raise ValueError(f"ads_per_block must be at least 1, not {ads_per_block}")
    fs, path = filesystem(source)
    kind = ad_format(Path(path))
    compressed = Path(path).suffix.lower() in COMPRESSIONS
    uri = str(source) if "://" in str(source) else path
    if kind == ".parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        cuts = [
            (s, min(s + ads_per_block, rows), s + 1) for s in range(0, rows, ads_per_block)
        ] or [(0, 0, 1)]
    elif kind == ".jsonl" and not compressed and not _wide_unicode(fs, path):
        cuts = _line_cuts(fs, path, ads_per_block)
    elif "://" in str(source):
        raise ValueError(
            f"{source}: only uncompressed UTF-8 JSON Lines and Parquet are read from a URI"
        )
    else:
        Path(path).stat()  # a missing file fails like the others
        cuts = [(0, 0, 1)]
        kind = "whole"
    return [
        {"index": i, "uri": uri, "kind": kind, "start": start, "stop": stop, "first": first}
        for i, (start, stop, first) in enumerate(cuts)
    ]


def _wide_unicode(fs: pafs.FileSystem, path: str) -> bool:
    """Whether a file starts with a UTF-16 or UTF-32 byte-order mark: read whole, it gets
    the one error :func:`~ensemble.reader.read_ads` gives it, not one per cut line."""
    with fs.open_input_stream(path) as f:
        return f.read(2) in UTF16_BOMS


def _line_cuts(fs: pafs.FileSystem, path: str, ads_per_block: int) -> list[tuple[int, int, int]]:
    """``(start byte, stop byte, first line number)`` of blocks of ``ads_per_block`` lines."""
    stops: list[int] = []
    offset = lines = 0
    with fs.open_input_stream(path) as f:
        while piece := f.read(SCAN_BYTES):
            ends = np.flatnonzero(np.frombuffer(piece, np.uint8) == ord("\n"))
            # the ends of lines ads_per_block, 2 * ads_per_block, ... of the file
            first_cut = ads_per_block - 1 - lines % ads_per_block
            stops += [offset + int(end) + 1 for end in ends[first_cut::ads_per_block]]
            lines += len(ends)
            offset += len(piece)
    if not stops or stops[-1] < offset:
        stops.append(offset)  # the last lines, fewer than ads_per_block
    starts = [0, *stops[:-1]]
    return [
        (a, b, 1 + i * ads_per_block) for i, (a, b) in enumerate(zip(starts, stops, strict=True))
    ]


class ScoreBlocks:
    """The actor of the pool: loads the model once, then scores one block per call.

    Args:
        model: A checkpoint directory or an export artifact directory (``manifest.json``);
            None for the embedded default model. It must exist on every node.
        threads: Torch intra-op threads and preparation threads of this actor.
        batch_size: Ads per forward pass.
        device: ``"cpu"`` or ``"cuda"``.
        any_path: Accept media paths outside the folder of the ads file.
    """

    def __init__(
        self,
        model: str | None,
        *,
        threads: int = 1,
        batch_size: int = 8,
        sort_window: int = 8,
        device: str = "cpu",
        any_path: bool = False,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.scorer = load_scorer(
            model,
            device=device,
            batch_size=batch_size,
            sort_window=sort_window,
            workers=threads,
            any_path=any_path,
        )

    def __call__(self, blocks: dict[str, np.ndarray]) -> pa.Table:
        """Score the blocks of one call (``map_batches`` passes one).

        Returns:
            A table with the columns ``COLUMNS``: the block index, the ad id and status, and
            the row as the local command's JSON Lines hold it.
        """
        import pyarrow as pa

        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for i in range(len(blocks["index"])):
            block = {key: values[i] for key, values in blocks.items()}
            uri = str(block["uri"])
            local = "://" not in uri
            # media paths resolve against a local file's folder; beside a URI there is no
            # folder to confine them to, so such ads send their media inline (base64) or as
            # object-store URIs (the preparer reads those wherever it was made with paths)
            self.scorer.preparer.allow_paths = local
            base_dir = Path(uri).parent if local else None
            records = block_records(block, self.scorer.config.limits)
            for row in self.scorer.iter_scores(records, base_dir=base_dir):
                columns["block"].append(int(block["index"]))
                columns["id"].append(row["id"])
                columns["status"].append(row["status"])
                columns["row"].append(json.dumps(row))
        formatter = self.scorer.formatter
        meta = {
            POLICIES_KEY: json.dumps(self.scorer.policy_names),
            COLUMNS_KEY: json.dumps(
                flat_columns(self.scorer.policy_names, formatter.measurement_names)
            ),
        }
        schema = pa.schema(
            [
                ("block", pa.int64()),
                ("id", pa.string()),
                ("status", pa.string()),
                ("row", pa.string()),
            ],
            metadata=meta,
        )
        return pa.table(columns, schema=schema)


def block_records(block: Mapping[str, Any], limits: MediaLimits | None = None) -> Iterator[Record]:
    """The ads of one block of :func:`plan_blocks`, read by THE reader (numbered as in the
    whole file)."""
    uri, kind = str(block["uri"]), str(block["kind"])
    start, stop = int(block["start"]), int(block["stop"])
    fs, path = filesystem(uri)
    if kind == "whole":
        yield from read_ads(path, limits=limits)
        return
    with fs.open_input_file(path) as f:
        if kind == ".parquet":
            yield from read_part(f, kind, rows=range(start, stop), limits=limits)
        else:
            stream = io.BufferedReader(f.get_stream(start, stop - start))
            yield from read_part(stream, kind, first=int(block["first"]), limits=limits)


def load_scorer(model: str | Path | None, **options: Any) -> Scorer:
    """A :class:`~ensemble.scoring.Scorer` of a checkpoint or an export artifact directory."""
    from ensemble.scoring import load

    if model is not None and (Path(model) / "manifest.json").is_file():
        from export.artifact import load_artifact

        device = options.pop("device", "cpu")
        return load_artifact(model, device=device).scorer(
            allow_paths=True, device=device, **options
        )
    return load(model, **options)


def score_dataset(
    source: str | Path,
    *,
    model: str | Path | None = None,
    actors: int = 1,
    threads_per_actor: int = 1,
    num_gpus_per_actor: float = 0,
    batch_size: int = 8,
    sort_window: int = 8,
    ads_per_block: int = ADS_PER_BLOCK,
    any_path: bool = False,
) -> ray.data.Dataset:
    """The rows of a file of ads as a lazy Ray Dataset, scored by a pool of actors.

    Runs on the Ray cluster ``ray.init()`` joined (a local one unless ``RAY_ADDRESS`` or
    ``ray.init(address=...)`` names another); nothing runs until the dataset is consumed
    (:func:`write_results`, ``iter_rows``, ``write_parquet``, ...).

    Args:
        source: JSON Lines or Parquet (CSV, JSON, ``.gz`` / ``.zst``: one block), a local path
            or a pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``). Media paths are
            relative to a local file (on a cluster, a path every node sees), or object-store
            URIs (``s3://``, ``gs://``, ``hdfs://``, ``file://``) read by every actor; the ads
            of a remote file send media as URIs or inline (base64, ``data:``), a path is
            refused.
        model: A checkpoint or export artifact directory, present on every node (default: the
            embedded default model).
        actors: Actors in the pool, each holding the model once.
        threads_per_actor: CPUs each actor reserves; its torch and preparation threads.
        num_gpus_per_actor: GPUs each actor reserves (the model then runs on ``cuda``).
        batch_size: Ads per forward pass.
        sort_window: Batches read ahead and sorted by length bucket within a block
            (:class:`~ensemble.scoring.Scorer`).
        ads_per_block: Ads per block (the unit of work, retry and output file).
        any_path: Accept media paths outside the folder of the ads file.

    Returns:
        One row per ad with the columns ``block`` (the block's index), ``id``, ``status`` and
        ``row`` (the result row as JSON text: ``json.loads`` gives the local command's row,
        :func:`ensemble.postprocess.flatten` its flat form).
    """
    import ray.data

    blocks = plan_blocks(source, ads_per_block)
    dataset = ray.data.from_items(blocks, override_num_blocks=len(blocks))
    return dataset.map_batches(
        ScoreBlocks,
        fn_constructor_kwargs={
            "model": None if model is None else str(model),
            "threads": threads_per_actor,
            "batch_size": batch_size,
            "sort_window": sort_window,
            "device": "cuda" if num_gpus_per_actor > 0 else "cpu",
            "any_path": any_path,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor,
        num_gpus=num_gpus_per_actor,
    )


def write_results(dataset: ray.data.Dataset, output: str | Path, *, writers: int = 1) -> Summary:
    """Write the rows of :func:`score_dataset`, one file per block, and summarise them.

    Args:
        dataset: The scored rows.
        output: A directory (created; it must hold no ``part-*`` file yet) whose suffix,
            ``.jsonl`` or ``.parquet``, picks the format of its ``part-NNNNNN`` files: the
            rows as :class:`~ensemble.writers.RowWriter` writes them for the local command.
        writers: Write tasks at once. They reserve no CPU (a pool of actors may hold every
            CPU of the cluster until its last block); this bound keeps Ray from starting a
            worker process for every block waiting to be written.

    Returns:
        The run's :class:`~ensemble.summary.Summary`, blocks merged in file order.
    """
    sink = PartsDatasink(output)
    dataset.write_datasink(sink, ray_remote_args={"num_cpus": 0}, concurrency=writers)
    return sink.summary


def score_to(
    source: str | Path,
    output: str | Path,
    *,
    address: str | None = None,
    progress: bool = True,
    **options: Any,
) -> Summary:
    """Score a file of ads on Ray into a directory of results (what ``adpolicy score
    --engine ray`` runs): :func:`score_dataset` then :func:`write_results`.

    Args:
        source: The ads (see :func:`score_dataset`).
        output: The results directory (see :func:`write_results`).
        address: The Ray cluster to join (default: ``RAY_ADDRESS``, else a local Ray started
            here); ignored when this process already joined one.
        progress: Show Ray Data's progress display.
        options: :func:`score_dataset`'s options.
    """
    import ray.data

    if output_format(Path(str(output))) not in PART_FORMATS:
        raise ValueError(f"a Ray run writes {' or '.join(PART_FORMATS)} parts, not {output}")
    model = options.get("model")
    if model is not None and not Path(model).is_dir():
        raise OSError(f"{model}: no such checkpoint or artifact directory")
    plan_blocks(source, options.get("ads_per_block", ADS_PER_BLOCK))  # fail before Ray starts
    fresh_output(output)
    if not ray.is_initialized():
        ray.init(address=address)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    return write_results(score_dataset(source, **options), output)


def read_results(output: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a :func:`write_results` directory in file order: nested rows from
    ``.jsonl`` parts, flat rows from ``.parquet`` parts."""
    import pyarrow.parquet as pq

    fs, root = filesystem(output)
    parts = sorted(
        info.path
        for info in fs.get_file_info(_selector(root))
        if Path(info.path).name.startswith("part-")
    )
    for path in parts:
        with fs.open_input_file(path) as f:
            if path.endswith(".parquet"):
                yield from pq.read_table(f).to_pylist()
            else:
                yield from (json.loads(line) for line in f.read().splitlines() if line.strip())


def fresh_output(output: str | Path) -> None:
    """Create a results directory, refusing one that holds parts already (a new run's parts
    would mix with them).

    Raises:
        ValueError: The directory holds ``part-*`` files.
    """
    fs, root = filesystem(output)
    fs.create_dir(root, recursive=True)
    old = [
        i.path for i in fs.get_file_info(_selector(root)) if Path(i.path).name.startswith("part-")
    ]
    if old:
        raise ValueError(
            f"{output} already holds results ({len(old)} part files); remove them or write elsewhere"
        )


def _result_columns(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """The policies and flat result columns a block's schema metadata carries."""
    meta = schema.metadata or {}
    if POLICIES_KEY.encode() not in meta:
        raise ValueError("not a dataset of score_dataset(): its blocks carry no result columns")
    return json.loads(meta[POLICIES_KEY.encode()]), json.loads(meta[COLUMNS_KEY.encode()])


def _selector(root: str) -> Any:
    import pyarrow.fs as pafs

    return pafs.FileSelector(root, allow_not_found=True)


class PartsDatasink:
    """A Ray Datasink writing each block's rows to ``part-NNNNNN.<format>`` (see
    :func:`write_results`); built lazily on :class:`ray.data.Datasink`."""

    def __new__(cls, output: str | Path) -> Any:
        return _parts_datasink()(output)


def _parts_datasink() -> type:
    """The Datasink class (defined on first use, so that importing this module needs no Ray)."""
    from ray.data.datasource.datasink import Datasink

    class _PartsDatasink(Datasink[list[tuple[int, Summary]]]):
        def __init__(self, output: str | Path) -> None:
            self.uri = str(output)
            self.format = output_format(Path(self.uri))
            if self.format not in PART_FORMATS:
                raise ValueError(
                    f"a Ray run writes {' or '.join(PART_FORMATS)} parts, not {self.format}"
                )
            self.summary = Summary([])

        def on_write_start(self, schema: Any = None) -> None:
            fresh_output(self.uri)

        def write(self, blocks: Iterable[Any], ctx: Any) -> list[tuple[int, Summary]]:
            import pyarrow as pa

            done = []
            for block in blocks:
                table = block if isinstance(block, pa.Table) else pa.table(block)
                policies, columns = _result_columns(table.schema)
                for index in sorted(set(table.column("block").to_pylist())):
                    rows = table.filter(pa.compute.equal(table.column("block"), index))["row"]
                    summary = Summary(policies)
                    self._write_part(
                        index, [json.loads(r) for r in rows.to_pylist()], columns, summary
                    )
                    done.append((index, summary))
            return done

        def _write_part(
            self, index: int, rows: list[Any], columns: list[str], summary: Summary
        ) -> None:
            """Write one block's file under a temporary name, then rename it into place."""
            import tempfile

            import pyarrow.fs as pafs

            fs, root = filesystem(self.uri)
            name = f"part-{index:06d}{self.format}"
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / name
                with RowWriter(local, columns) as writer:
                    for row in rows:
                        writer.write(row)
                        summary.add(row)
                temporary = f"{root}/.{name}.{uuid.uuid4().hex}"
                pafs.copy_files(str(local), temporary, destination_filesystem=fs)
                fs.move(temporary, f"{root}/{name}")

        def on_write_complete(self, write_result: Any) -> None:
            for _, summary in sorted(
                (part for parts in write_result.write_returns for part in parts), key=lambda p: p[0]
            ):
                self.summary.merge(summary)

    return _PartsDatasink
