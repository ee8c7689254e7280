"""Offline scoring: ``load()`` an ensemble, ``score()`` ads or ``score_file()`` a JSONL file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from encoders.base import InputError
from ensemble.batch import AdError, AdPreparer, PreparedAd
from ensemble.model import AdPolicyEnsemble
from ensemble.postprocess import ResultFormatter, error_result
from ensemble.writers import write_results

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(__file__).parent / "default"


class Scorer:
    """Scores raw ads with an ensemble: preparation, batched inference, thresholds.

    Args:
        model: An ensemble with its config attached.
        device: Where the model runs (``"cpu"``, ``"cuda"``, ...).
        batch_size: Ads per forward pass.
        workers: Threads preparing ads (decoding releases the GIL).
    """

    def __init__(
        self,
        model: AdPolicyEnsemble,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        workers: int = 2,
    ) -> None:
        if model.config is None:
            raise ValueError("the model has no config; build it with build_ensemble()")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.config = model.config
        self.batch_size = batch_size
        self.workers = workers
        self.preparer = AdPreparer(model.config)
        self.formatter = ResultFormatter(model.config, model.measurement_names)

    @property
    def policy_names(self) -> list[str]:
        return self.config.policy_names

    def score(
        self, ads: Iterable[Any], *, base_dir: str | Path | None = None, progress: bool = False
    ) -> list[dict[str, Any]]:
        """Score ads (mappings with ``id`` and any of text/image/audio/video).

        Returns:
            One result per ad, in order; a bad ad gets ``status: "error"`` and its errors.
        """
        return list(self.iter_scores(ads, base_dir=base_dir, progress=progress))

    def iter_scores(
        self,
        ads: Iterable[Any],
        *,
        base_dir: str | Path | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Like :meth:`score`, streaming results batch by batch."""
        root = Path(base_dir) if base_dir is not None else None
        bar = tqdm(total=total, unit="ad", disable=not progress, dynamic_ncols=True)
        items = iter(enumerate(ads))
        with ThreadPoolExecutor(max_workers=self.workers) as pool, bar:
            while chunk := list(islice(items, self.batch_size)):
                prepared = list(pool.map(lambda pair: self._prepare(pair, root), chunk))
                yield from self._score_prepared(prepared)
                bar.update(len(chunk))

    def _prepare(self, pair: tuple[int, Any], root: Path | None) -> PreparedAd | dict[str, Any]:
        index, ad = pair
        try:
            return self.preparer.prepare(ad, index=index, base_dir=root)
        except AdError as err:
            ad_id = ad.get("id") if isinstance(ad, Mapping) else None
            return error_result(str(ad_id if ad_id is not None else f"#{index}"), err)

    @torch.inference_mode()
    def _score_prepared(
        self, prepared: Sequence[PreparedAd | dict[str, Any]]
    ) -> list[dict[str, Any]]:
        good = [p for p in prepared if isinstance(p, PreparedAd)]
        results: dict[int, dict[str, Any]] = {}
        if good:
            batch = self.preparer.collate(good)
            out = self.model(*batch.to(self.device))
            formatted = self.formatter.format_batch(
                batch.ids, out.scores, out.modality_scores, out.measurements, batch.presence
            )
            results = {id(p): r for p, r in zip(good, formatted, strict=True)}
        return [results[id(p)] if isinstance(p, PreparedAd) else p for p in prepared]

    def score_file(
        self, path: str | Path, output: str | Path | None = None, *, progress: bool = True
    ) -> list[dict[str, Any]]:
        """Score a JSONL file of ads (media paths relative to the file); optionally write results.

        An ad without an id is named after its line. A line that is not valid JSON gets an
        error row; every other ad is scored.
        """
        path = Path(path)
        parsed = [
            _parse_line(line, n)
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip()
        ]
        good = [ad for ad, error in parsed if error is None]
        scored = self.iter_scores(good, base_dir=path.parent, progress=progress, total=len(good))
        results = [error if error is not None else next(scored) for _, error in parsed]
        if output is not None:
            write_results(results, output)
        return results


def _parse_line(line: str, number: int) -> tuple[Any, dict[str, Any] | None]:
    """``(ad, None)``, or ``(None, error row)`` for a line that is not valid JSON."""
    try:
        ad = json.loads(line)
    except json.JSONDecodeError as err:
        problem = f"line {number} is not valid JSON: {err.msg}"
        return None, error_result(f"line-{number}", AdError([InputError("ad", problem)]))
    if not isinstance(ad, dict):
        problem = f"line {number}: expected a JSON object, got {type(ad).__name__}"
        return None, error_result(f"line-{number}", AdError([InputError("ad", problem)]))
    ad.setdefault("id", f"line-{number}")
    return ad, None


def load(path: str | Path | None = None, **scorer_options: Any) -> Scorer:
    """A :class:`Scorer` for a checkpoint directory (default: the embedded default model)."""
    from ensemble.pretrained import from_pretrained

    return Scorer(from_pretrained(path or DEFAULT_DIR), **scorer_options)
