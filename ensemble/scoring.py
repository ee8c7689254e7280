"""Offline scoring: ``load()`` an ensemble, ``score()`` ads or ``score_file()`` a JSONL file."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from encoders.base import InputError
from ensemble.batch import AdBatch, AdError, AdPreparer, PreparedAd
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble, EnsembleOutput
from ensemble.postprocess import ResultFormatter, error_result
from ensemble.writers import write_results

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(__file__).parent / "default"


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
        workers: Threads preparing ads (decoding releases the GIL).
        allow_paths: Whether media fields may be file paths.
        preparer: The preparation to use (default: a packed one built from ``config``).
    """

    def __init__(
        self,
        model: AdPolicyEnsemble | Callable[..., Sequence[Tensor]],
        *,
        config: ModelConfig | None = None,
        measurement_names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        workers: int = 2,
        allow_paths: bool = True,
        preparer: AdPreparer | None = None,
    ) -> None:
        self.device = torch.device(device)
        if isinstance(model, AdPolicyEnsemble):
            config, measurement_names = model.config, model.measurement_names
            model = model.eval().to(self.device)
        if config is None or measurement_names is None:
            raise ValueError("the model has no config; build it with build_ensemble()")
        self.model = model
        self.config = config
        self.batch_size = batch_size
        self.workers = workers
        self.preparer = preparer or AdPreparer(config, allow_paths=allow_paths)
        self.formatter = ResultFormatter(config, measurement_names)

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
                prepared = list(
                    pool.map(
                        lambda pair: self.prepare(pair[1], index=pair[0], base_dir=root), chunk
                    )
                )
                yield from self.score_prepared(prepared)
                bar.update(len(chunk))

    def prepare(
        self, ad: Any, *, index: int = 0, base_dir: Path | None = None
    ) -> PreparedAd | dict[str, Any]:
        """A prepared ad, or its error row (``status: "error"``) when a field is bad."""
        try:
            return self.preparer.prepare(ad, index=index, base_dir=base_dir)
        except AdError as err:
            ad_id = ad.get("id") if isinstance(ad, Mapping) else None
            return error_result(str(ad_id if ad_id is not None else f"#{index}"), err)

    @torch.inference_mode()
    def run(self, prepared: Sequence[PreparedAd]) -> tuple[AdBatch, EnsembleOutput]:
        """One forward pass over prepared ads: the batch and the raw outputs (on CPU)."""
        batch = self.preparer.collate(prepared)
        outputs = self.model(*batch.to(self.device))
        return batch, EnsembleOutput(*(t.float().cpu() for t in outputs))

    def score_prepared(
        self, prepared: Sequence[PreparedAd | dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Results of prepared ads; an error row (a dict) passes through in its place."""
        good = [p for p in prepared if isinstance(p, PreparedAd)]
        results: dict[int, dict[str, Any]] = {}
        if good:
            batch, out = self.run(good)
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
