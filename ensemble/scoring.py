"""Offline scoring: ``load()`` an ensemble, ``score()`` ads, or ``score_file_to()`` a file.

Every path through here (and evaluation, the monitoring baseline) is ONE loop:
:meth:`AdPreparer.stream` prepares the ads in chunks with one rule for a bad ad (``on_error``),
:meth:`Scorer.iter_scored` runs each chunk once and formats the rows. A batch whose forward
pass fails is retried ad by ad, so such a failure costs only the ads that cause it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ensemble.batch import AdBatch, AdPreparer, OnError, PreparedAd
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble, EnsembleOutput
from ensemble.postprocess import ResultFormatter
from ensemble.reader import check_ads_file, read_ads, records_of
from ensemble.rows import AdError, Row, error_row
from ensemble.summary import Summary
from ensemble.writers import (
    RowWriter,
    check_not_input,
    flat_columns,
    output_format,
    written_ids,
)

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(__file__).parent / "default"
SORT_WINDOW = 8  # batches read ahead and sorted by bucket, offline


@dataclass(frozen=True)
class Scored:
    """One ad through the loop.

    Attributes:
        row: Its result row.
        prepared: The prepared ad (None for an ad that failed).
        scores: The graph's raw scores [P], calibrated or not (None for an ad that failed).
    """

    row: Row
    prepared: PreparedAd | None = None
    scores: Tensor | None = None


class Scorer:
    """Scores raw ads with an ensemble: preparation, batched inference, thresholds.

    Args:
        model: An ensemble with its config attached, or any callable taking the graph's
            inputs and returning ``(scores, modality_scores, measurements)`` (a traced graph),
            in which case ``config`` and ``measurement_names`` must be given.
        config: The model config (taken from ``model`` when it is an ensemble).
        measurement_names: The measurement columns (likewise).
        device: Where the model runs (``"cpu"``, ``"cuda"``, ...).
        batch_size: Ads per forward pass.
        sort_window: Batches read ahead and sorted by length bucket before they are cut
            into forward passes (so a short text rarely pads to a long one's bucket; rows
            still come out in input order). 1 batches ads as they come.
        workers: Threads preparing ads (decoding releases the GIL).
        allow_paths: Whether media fields may be file paths.
        any_path: Accept paths that leave the folder of the ads file.
        preparer: The preparation to use (default: a packed one built from ``config``).
        analyzer_rows: For a graph: the most inputs of the longest bucket that one forward
            pass gives the encoders whose rows run apart (``Encoder.rows_apart``: the flash
            and loudness analyzers), or as many more shorter ones as hold the same elements.
            A traced analyzer runs its whole batch at once, and 32 minute-long inputs leave
            the cache. None: no limit (eager analyzers group their rows themselves).
    """

    def __init__(
        self,
        model: AdPolicyEnsemble | Callable[..., Sequence[Tensor]],
        *,
        config: ModelConfig | None = None,
        measurement_names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        sort_window: int = SORT_WINDOW,
        workers: int = 2,
        allow_paths: bool = True,
        any_path: bool = False,
        preparer: AdPreparer | None = None,
        analyzer_rows: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = _device(device)
        if isinstance(model, AdPolicyEnsemble):
            config, measurement_names = model.config, model.measurement_names
            model = model.eval().to(self.device)
        if config is None or measurement_names is None:
            raise ValueError("the model has no config; build it with build_ensemble()")
        self.model = model
        self.config = config
        self.batch_size = batch_size
        self.sort_window = max(1, sort_window)
        self.workers = workers
        self.preparer = preparer or AdPreparer(config, allow_paths=allow_paths, any_path=any_path)
        self.formatter = ResultFormatter(config, measurement_names)
        self.analyzer_rows = analyzer_rows

    @property
    def policy_names(self) -> list[str]:
        return self.config.policy_names

    def score(
        self,
        ads: Iterable[Any],
        *,
        base_dir: str | Path | None = None,
        on_error: OnError = "row",
        progress: bool = False,
    ) -> list[Row]:
        """Score ads (mappings with ``id`` and any of text/image/audio/video).

        Returns:
            One row per ad, in order; a bad ad gets ``status: "error"`` and its errors
            (``on_error="row"``), is left out (``"skip"``) or raises (``"raise"``).
        """
        return list(self.iter_scores(ads, base_dir=base_dir, on_error=on_error, progress=progress))

    def iter_scores(
        self,
        ads: Iterable[Any],
        *,
        base_dir: str | Path | None = None,
        on_error: OnError = "row",
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[Row]:
        """Like :meth:`score`, streaming rows batch by batch."""
        for scored in self.iter_scored(
            ads, base_dir=base_dir, on_error=on_error, progress=progress, total=total
        ):
            yield scored.row

    def iter_scored(
        self,
        ads: Iterable[Any],
        *,
        base_dir: str | Path | None = None,
        on_error: OnError = "row",
        progress: bool = False,
        total: int | None = None,
        batch_size: int | None = None,
    ) -> Iterator[Scored]:
        """THE scoring loop: each ad (a raw ad or a :class:`~ensemble.rows.Record`) with its
        row, its prepared form and its raw scores, in order (``batch_size`` ads per forward
        pass, default the scorer's, cut from windows sorted by length bucket)."""
        root = Path(base_dir) if base_dir is not None else None
        bar = tqdm(total=total, unit="ad", disable=not progress, dynamic_ncols=True)
        size = batch_size or self.batch_size
        chunks = self.preparer.stream(
            records_of(ads),
            base_dir=root,
            on_error=on_error,
            chunk_size=size * self.sort_window,
            workers=self.workers,
        )
        with bar:
            for chunk in chunks:
                good = [p for p in chunk if isinstance(p, PreparedAd)]
                scored = iter(self.score_by_bucket(good, batch_size=size))
                for item in chunk:
                    yield next(scored) if isinstance(item, PreparedAd) else Scored(item)
                bar.update(len(chunk))

    def score_by_bucket(
        self, good: Sequence[PreparedAd], *, batch_size: int | None = None
    ) -> list[Scored]:
        """Rows of prepared ads, in their order, run grouped by length bucket
        (:meth:`~ensemble.batch.AdPreparer.bucket_key`), shortest first: no ad is padded to
        another's longer bucket (a 5 s clip is never run as 30 s because a longer one shares
        its pass).

        Args:
            good: Prepared ads.
            batch_size: None: one forward pass per bucket (a server's batch, already sized);
                else each bucket cut into passes of at most ``batch_size``.
        """
        keys = [self.preparer.bucket_key(p) for p in good]
        order = sorted(range(len(good)), key=keys.__getitem__)
        result: dict[int, Scored] = {}
        for _, group in groupby(order, keys.__getitem__):
            part = list(group)
            size = self._pass_size(good[part[0]], batch_size) or len(part)
            for i in range(0, len(part), size):
                ads = part[i : i + size]
                result.update(zip(ads, self.score_prepared([good[j] for j in ads]), strict=True))
        return [result[i] for i in range(len(good))]

    def _pass_size(self, first: PreparedAd, batch_size: int | None) -> int | None:
        """Ads per forward pass of a bucket whose first ad is ``first`` (its ads share their
        buckets, so their analyzer loads): ``batch_size``, or fewer where ``analyzer_rows``
        limits the pass; None: the whole bucket at once."""
        rows = self.analyzer_rows
        load = self.preparer.apart_load(first) if rows else 0.0
        limits = [batch_size, max(1, int(rows / load)) if rows and load else None]
        return min((n for n in limits if n), default=None)

    def score_prepared(self, good: Sequence[PreparedAd]) -> list[Scored]:
        """Rows of prepared ads: one forward pass (:meth:`run`), or ad by ad when it fails (an
        ad the model itself fails on gets a 500 row; the others keep their scores)."""
        if not good:
            return []
        try:
            batch, out = self.run(good)
        except Exception:
            if len(good) == 1:
                log.exception("ad %s: the model failed on it", good[0].id)
                problem = "internal error while scoring the ad; see the log"
                return [
                    Scored(
                        error_row(good[0].id, AdError.of("ad", problem, 500), self.preparer.model)
                    )
                ]
            log.warning("a batch failed; scoring its %d ads one by one", len(good))
            return [s for p in good for s in self.score_prepared([p])]
        rows = self.formatter.format_batch(
            batch.ids,
            out.scores,
            out.modality_scores,
            out.measurements,
            batch.presence,
            batch.warnings,
        )
        return [Scored(r, p, s) for r, p, s in zip(rows, good, out.scores, strict=True)]

    @torch.inference_mode()
    def run(self, prepared: Sequence[PreparedAd]) -> tuple[AdBatch, EnsembleOutput]:
        """One forward pass over prepared ads: the batch and the raw outputs (on CPU), one
        row per ad. A text longer than a window runs its further windows in the same pass, as
        text-only ads after the others, and its ad takes each policy's maximum over them
        (scores and per-modality scores; its measurements and presence are its own)."""
        windows = [w for p in prepared for w in p.window_ads()]
        batch = self.preparer.collate([*prepared, *windows])
        outputs = EnsembleOutput(*(t.float().cpu() for t in self.model(*batch.to(self.device))))
        n = len(prepared)
        batch = AdBatch(
            batch.ids[:n], batch.inputs, batch.presence[:n], batch.stats[:n], batch.warnings[:n]
        )
        return batch, _max_over_windows(prepared, outputs)

    def iter_file(
        self,
        path: str | Path,
        *,
        skip: Callable[[str], bool] = lambda _: False,
        on_error: OnError = "row",
        progress: bool = False,
    ) -> Iterator[Row]:
        """Stream the rows of a file of ads (:func:`ensemble.reader.read_ads`; media paths
        relative to it and, unless the scorer allows any path, inside its folder); ads
        whose id ``skip`` accepts are left out. An ad without an id is named after its line."""
        path = Path(path)
        records = (r for r in read_ads(path, limits=self.config.limits) if not skip(r.id))
        return self.iter_scores(records, base_dir=path.parent, on_error=on_error, progress=progress)

    def score_file(self, path: str | Path, *, progress: bool = False) -> list[Row]:
        """The rows of a (small) file of ads, in memory; see :meth:`iter_file`."""
        return list(self.iter_file(path, progress=progress))

    def score_file_to(
        self,
        path: str | Path,
        output: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
    ) -> Summary:
        """Score a file of ads into a results file, row by row (flat memory).

        Args:
            path: The ads (JSONL, JSON, CSV, Parquet; ``.gz`` / ``.zst``).
            output: The results (``.jsonl``, ``.json``, ``.csv`` or ``.parquet``).
            resume: Leave out the ads the output already holds rows of (of an id it holds n
                rows of, the first n) and append.

        Returns:
            The run's :class:`~ensemble.summary.Summary`.
        """
        output_format(output)
        check_ads_file(path)
        check_not_input(path, output)
        done = written_ids(output) if resume else Counter()
        summary = Summary(self.policy_names, skipped=0)

        def skip(ad_id: str) -> bool:  # rows come in input order: the first ads of an id are done
            if done[ad_id] == 0:
                return False
            done[ad_id] -= 1
            summary.skipped += 1
            return True

        columns = flat_columns(self.policy_names, self.formatter.measurement_names)
        with RowWriter(output, columns, append=resume) as writer:
            for row in self.iter_file(path, skip=skip, progress=progress):
                writer.write(row)
                summary.add(row)
        return summary


def load(path: str | Path | None = None, **scorer_options: Any) -> Scorer:
    """A :class:`Scorer` for a checkpoint directory (default: the embedded default model)."""
    from ensemble.pretrained import from_pretrained

    return Scorer(from_pretrained(path or DEFAULT_DIR), **scorer_options)


def _max_over_windows(ads: Sequence[PreparedAd], out: EnsembleOutput) -> EnsembleOutput:
    """Outputs of :meth:`Scorer.run` reduced to one row per ad: each ad's scores and
    per-modality scores are the maximum over its own row and its windows' rows (which follow
    the ads' rows in ad order)."""
    n = len(ads)
    scores, breakdown = out.scores[:n].clone(), out.modality_scores[:n].clone()
    row = n
    for i, ad in enumerate(ads):
        for _ in ad.windows:
            scores[i] = torch.maximum(scores[i], out.scores[row])
            breakdown[i] = torch.maximum(breakdown[i], out.modality_scores[row])
            row += 1
    return EnsembleOutput(scores, breakdown, out.measurements[:n])


def _device(name: str | torch.device) -> torch.device:
    """``name`` as a device this machine has.

    Raises:
        ValueError: Not a device name, or a CUDA device where CUDA is not available.
    """
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {str(name)!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r}: CUDA is not available on this machine")
    return device
