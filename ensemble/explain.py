"""Explanations: why an ad got its scores, from the same preparation and the same graph.

For each scored ad, per policy:

- ``breakdown``: every present modality's own score before fusion (the graph's
  ``modality_scores``; :class:`~ensemble.fusion.MaxFusion` serves the highest) and the
  modality that decided;
- ``text``: each word's attribution by occlusion: the text modality's score of the ad minus
  its score with that word deleted (positive: the word raises the score). The ad and every
  deletion go through the graph in batches of ``batch_size``; a text of W words costs W + 1
  text rows (tokenizing included, the cost is in ``ms``);
- ``image``: an occlusion map on a ``grid`` x ``grid`` grid: the image modality's score minus
  its score with one cell occluded (filled with a strong blur of the image, or its mean colour),
  all cells in batched runs of the graph;
- ``video``: the flash analyzer's flashes in the one-second window ending in each second
  (:meth:`encoders.flash.FlashAnalyzer.timeline`), its worst window and the rule's limit;
- ``audio``: loudness of each second (:meth:`encoders.loudness.LoudnessAnalyzer.per_second`)
  against the rule's target and tolerance.

Text and image work through :class:`~ensemble.scoring.Scorer` (an eager ensemble or a traced
graph alike), so offline explanations and the TorchServe handler's ``/explanations`` agree;
video and audio read the analyzers, built from the config (they hold no weights). A bad ad
keeps its error row; a part of an explanation that fails is that part's ``error``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageStat
from torch import Tensor

from encoders.base import MODALITIES, Modality
from encoders.flash import FlashAnalyzer
from encoders.loudness import RATE, LoudnessAnalyzer
from encoders.registry import get_entry
from ensemble.batch import PreparedAd
from ensemble.reader import records_of
from ensemble.rows import Record, Row
from ensemble.scoring import Scored, Scorer

log = logging.getLogger(__name__)
Occluder = Literal["blur", "mean"]
DIGITS = 6


@dataclass(frozen=True)
class ExplainSettings:
    """How explanations are computed.

    Attributes:
        grid: Cells per side of the image occlusion map.
        occluder: What fills an occluded cell: ``"blur"`` (the image under a Gaussian blur
            of radius ``cell / 2``: content gone, colours kept) or ``"mean"`` (its mean colour).
        max_words: Words explained per text (the rest get no attribution; a longer text is
            truncated by the text model anyway).
        batch_size: Altered copies per forward pass.
    """

    grid: int = 7
    occluder: Occluder = "blur"
    max_words: int = 128
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.grid < 1 or self.max_words < 1 or self.batch_size < 1:
            raise ValueError(f"grid, max_words and batch_size must be at least 1: {self}")
        if self.occluder not in ("blur", "mean"):
            raise ValueError(f"occluder must be 'blur' or 'mean', not {self.occluder!r}")


@dataclass(frozen=True)
class Explained:
    """One ad explained.

    Attributes:
        row: Its result row with an ``explanation`` (an error row as scoring gives it).
        image: The decoded image the map was computed on (None without one).
    """

    row: Row
    image: Image.Image | None = None


class Explainer:
    """Explains scored ads (see the module docstring).

    Args:
        scorer: The scorer whose graph and preparation are explained.
        settings: Grid, occluder, limits.
    """

    def __init__(self, scorer: Scorer, settings: ExplainSettings | None = None) -> None:
        self.scorer = scorer
        self.settings = settings or ExplainSettings()
        self.preparer = scorer.preparer
        config = scorer.config
        self.policies = {
            m: {
                j: p.name
                for j, p in enumerate(config.policies)
                if p.calibrated and any(config.modality(k) == m for k in p.heads)
            }
            for m in MODALITIES
        }
        self.rules = {k: p.rule for p in config.policies for k in p.heads}
        self.analyzers: dict[str, FlashAnalyzer | LoudnessAnalyzer] = {}
        for key, encoder in sorted(config.encoders.items()):
            entry = get_entry(encoder.type)
            if issubclass(entry.cls, FlashAnalyzer | LoudnessAnalyzer):
                analyzer = entry.build(encoder.make_settings())
                self.analyzers[key] = analyzer.eval()  # type: ignore[assignment]

    def explain(self, ads: Iterable[Any], *, base_dir: str | Path | None = None) -> list[Row]:
        """Explain ads in memory (mappings, as :meth:`Scorer.score` takes them).

        Returns:
            One row per ad, in order: the scored row with an ``explanation``, or its error row.
        """
        return [e.row for e in self.iter_explained(ads, base_dir=base_dir)]

    def iter_explained(
        self, ads: Iterable[Any], *, base_dir: str | Path | None = None
    ) -> Iterator[Explained]:
        """Score ads (raw, or :class:`~ensemble.rows.Record` from the reader) through the
        scorer's loop, ``batch_size`` at a time, and explain each scored one."""
        root = Path(base_dir) if base_dir is not None else None
        records = records_of(ads)
        while chunk := list(islice(records, self.scorer.batch_size)):
            for record, scored in zip(
                chunk, self.scorer.iter_scored(chunk, base_dir=root), strict=True
            ):
                yield self.explain_scored(record, scored, base_dir=root)

    def explain_scored(
        self, record: Record, scored: Scored, *, base_dir: Path | None = None
    ) -> Explained:
        """The explanation of one ad the scorer has scored (its raw form in ``record``)."""
        prepared = scored.prepared
        if prepared is None:
            return Explained(scored.row)
        start = time.perf_counter()
        ad: Mapping[str, Any] = record.ad
        explanation: dict[str, Any] = {"breakdown": breakdown(scored.row)}
        image: Image.Image | None = None
        present = dict(zip(MODALITIES, prepared.presence, strict=True))
        if present["text"] and self.policies["text"]:
            explanation["text"] = _guarded("text", lambda: self.text(prepared.id, ad["text"]))
        if present["image"] and self.policies["image"]:

            def explain_image() -> dict[str, Any]:
                nonlocal image
                image = self.preparer.read_image(ad["image"], base_dir=base_dir)
                return self.image(prepared.id, image)

            explanation["image"] = _guarded("image", explain_image)
        for key, analyzer in self.analyzers.items():
            if present[analyzer.modality]:
                explain = partial(self.analyzer, key, prepared, scored.row)
                explanation[analyzer.modality] = _guarded(analyzer.modality, explain)
        explanation["ms"] = round(1000 * (time.perf_counter() - start), 1)
        return Explained({**scored.row, "explanation": explanation}, image)

    def text(self, ad_id: str, text: str) -> dict[str, Any]:
        """Word attributions of one text by deletion.

        Returns:
            ``words`` (the text split on white space), per text policy ``score`` and
            ``attribution`` (one number per word; None past ``max_words``), ``variants``
            (texts run) and ``ms``.
        """
        start = time.perf_counter()
        words = text.split()
        shown = words[: self.settings.max_words]
        texts = [text, *(" ".join(words[:i] + words[i + 1 :]) for i in range(len(shown)))]
        scores = self.modality_scores("text", ad_id, texts)  # [1 + words, policies]
        return {
            "words": words,
            **self._attributions("text", scores, lambda a: [*a, *[None] * (len(words) - len(a))]),
            "variants": len(texts),
            "ms": round(1000 * (time.perf_counter() - start), 1),
        }

    def image(self, ad_id: str, image: Image.Image) -> dict[str, Any]:
        """The occlusion map of one decoded image.

        Returns:
            ``grid`` ([rows, cols]), ``occluder``, per image policy ``score`` and
            ``attribution`` ([rows][cols]: the score minus the score with that cell
            occluded), ``variants`` and ``ms``.
        """
        start = time.perf_counter()
        g = self.settings.grid
        boxes = grid_boxes(image.size, g)
        filler = occluder(image, self.settings.occluder, boxes[0])
        variants = [image, *(occlude(image, filler, box) for box in boxes)]
        scores = self.modality_scores("image", ad_id, variants)
        return {
            "grid": [g, g],
            "occluder": self.settings.occluder,
            **self._attributions("image", scores, lambda a: np.reshape(a, (g, g)).tolist()),
            "variants": len(variants),
            "ms": round(1000 * (time.perf_counter() - start), 1),
        }

    def analyzer(self, key: str, prepared: PreparedAd, row: Row) -> dict[str, Any]:
        """The per-second curve of a flash or loudness analyzer for one prepared ad."""
        analyzer = self.analyzers[key]
        inputs = [prepared.tensors[f"{key}.{s.name}"].unsqueeze(0) for s in analyzer.input_spec]
        measured = {
            name.split(".", 1)[1]: value
            for name, value in row.get("measurements", {}).items()
            if name.startswith(f"{key}.")
        }
        rule = self.rules.get(key, {})
        with torch.inference_mode():
            if isinstance(analyzer, FlashAnalyzer):
                grid, frames, fps = inputs
                timeline = analyzer.timeline(grid, frames, fps)[0]
                per_second = _per_second(timeline, int(frames), float(fps))
                return {
                    "encoder": key,
                    "flashes_per_second": _rounded(per_second[0]),
                    "red_flashes_per_second": _rounded(per_second[1]),
                    "worst_window_s": measured.get("worst_window_s"),
                    "max_flashes": measured.get("max_flashes"),
                    "max_red_flashes": measured.get("max_red_flashes"),
                    "limit": float(rule.get("max_flashes", 3.0)),
                }
            waveform, weights, length = inputs
            seconds = math.ceil(int(length) / RATE)
            lufs = analyzer.per_second(waveform, weights, length)[0, :seconds]
            return {
                "encoder": key,
                "lufs_per_second": _rounded(lufs),
                "integrated_lufs": measured.get("integrated_lufs"),
                "target_lufs": float(rule.get("target_lufs", -24.0)),
                "tolerance_lu": float(rule.get("tolerance_lu", 2.0)),
            }

    def modality_scores(self, modality: Modality, ad_id: str, variants: Sequence[Any]) -> Tensor:
        """The modality's own scores of copies of one field (texts, decoded images) run
        through the scorer's graph ``batch_size`` at a time, as an ad with that field alone.

        Returns:
            [variants, policies].
        """
        presence = tuple(m == modality for m in MODALITIES)
        column = MODALITIES.index(modality)
        size = self.settings.batch_size
        parts = []
        for start in range(0, len(variants), size):
            batch = [
                PreparedAd(ad_id, self.preparer.prepare_media(modality, v), presence)
                for v in variants[start : start + size]
            ]
            parts.append(self.scorer.run(batch)[1].modality_scores[:, column])
        return torch.cat(parts)

    def _attributions(
        self, modality: Modality, scores: Tensor, shape: Callable[[list[float]], Any]
    ) -> dict[str, Any]:
        """``score`` (the unaltered copy's) and ``attribution`` (its score minus each altered
        copy's, laid out by ``shape``) per policy of the modality."""
        policies = self.policies[modality]
        return {
            "score": {name: round(float(scores[0, j]), DIGITS) for j, name in policies.items()},
            "attribution": {
                name: shape(_rounded(scores[0, j] - scores[1:, j])) for j, name in policies.items()
            },
        }


def breakdown(row: Row) -> dict[str, Any]:
    """Per scored policy: its score, each present modality's own score and the modality that
    decided (the highest: :class:`~ensemble.fusion.MaxFusion`)."""
    out: dict[str, Any] = {}
    for policy, entry in row.get("policies", {}).items():
        if entry["status"] != "scored":
            continue
        own = {m: s[policy] for m, s in row.get("modalities", {}).items() if policy in s}
        decided = max(own, key=lambda m: own[m]) if own else None
        out[policy] = {"score": entry["score"], "modalities": own, "decided_by": decided}
    return out


def grid_boxes(size: tuple[int, int], cells: int) -> list[tuple[int, int, int, int]]:
    """``cells`` x ``cells`` boxes ``(left, top, right, bottom)`` covering an image of
    ``size`` (width, height), row by row; edges rounded to whole pixels, none empty when the
    image has at least ``cells`` pixels a side."""
    width, height = size
    xs = [round(i * width / cells) for i in range(cells + 1)]
    ys = [round(i * height / cells) for i in range(cells + 1)]
    return [
        (xs[c], ys[r], max(xs[c + 1], xs[c] + 1), max(ys[r + 1], ys[r] + 1))
        for r in range(cells)
        for c in range(cells)
    ]


def occluder(image: Image.Image, kind: Occluder, cell: tuple[int, int, int, int]) -> Image.Image:
    """The image whose pixels fill an occluded cell: the image under a Gaussian blur of
    half the cell's longer side, or its mean colour."""
    if kind == "blur":
        radius = max(cell[2] - cell[0], cell[3] - cell[1]) / 2
        return image.filter(ImageFilter.GaussianBlur(radius))
    mean = tuple(round(v) for v in ImageStat.Stat(image).mean)
    return Image.new(image.mode, image.size, mean if len(mean) > 1 else mean[0])


def occlude(image: Image.Image, filler: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """A copy of ``image`` with ``box`` taken from ``filler``."""
    copy = image.copy()
    copy.paste(filler.crop(box), box[:2])
    return copy


def _per_second(timeline: Tensor, frames: int, fps: float) -> Tensor:
    """The most flashes of any window ending within each second: [2, seconds]."""
    rate = max(fps, 1.0)
    seconds = max(1, math.ceil(frames / rate))
    ends = [min(frames, round((s + 1) * rate)) for s in range(seconds)]
    starts = [round(s * rate) for s in range(seconds)]
    windows = [timeline[:, a : max(b, a + 1)].amax(-1) for a, b in zip(starts, ends, strict=True)]
    return torch.stack(windows, dim=1)


def _rounded(values: Tensor) -> list[float]:
    return [round(float(v), DIGITS) for v in values.flatten()]


def _guarded(part: str, explain: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``explain()``, or ``{"error"}`` naming the problem: a failed part costs that part."""
    try:
        return explain()
    except ValueError as err:  # an InputError of a field read again (e.g. a changed file)
        return {"error": str(err)}
    except Exception as err:
        log.exception("explaining the %s failed", part)
        return {"error": f"internal error while explaining the {part} ({type(err).__name__})"}
