"""Inputs the export checks run on: real prepared ads (a user file or generated) and random ones.

"Real" inputs go through the same preparation as production (decode, resize, tokenize), so the
checks see realistic token lengths, padding, letterboxes and silence; random inputs from the
encoders' ``example_inputs`` cover the rest of the input range.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ensemble import samples
from ensemble.batch import AdPreparer, PreparedAd
from ensemble.reader import read_ads, records_of

log = logging.getLogger(__name__)


def prepare_ads(
    preparer: AdPreparer, ads: Iterable[Any], *, base_dir: Path | None = None
) -> list[PreparedAd]:
    """Prepare ads (raw, or records of a file); an ad that cannot be prepared is logged and
    left out.

    Only ads with a modality the model reads are kept (the others would be all placeholders).
    """
    chunks = preparer.stream(records_of(ads), base_dir=base_dir, on_error="skip")
    return [p for chunk in chunks for p in chunk if isinstance(p, PreparedAd) and any(p.presence)]


def calibration_ads(preparer: AdPreparer, path: str | Path | None = None) -> list[PreparedAd]:
    """Prepared real ads: those of a file of ads (media relative to it), else generated ones."""
    if path is None:
        return prepare_ads(preparer, samples.sample_ads())
    prepared = prepare_ads(preparer, read_ads(path), base_dir=Path(path).parent)
    if not prepared:
        raise ValueError(f"{path}: no ad could be prepared for this model's modalities")
    return prepared


def cycled_batch(
    preparer: AdPreparer, prepared: Sequence[PreparedAd], batch_size: int
) -> tuple[Tensor, ...]:
    """A batch of ``batch_size`` graph inputs cycling over prepared ads.

    Returns:
        The graph inputs, in the preparer's layout.
    """
    if not prepared:
        raise ValueError("no prepared ads to batch")
    items = [prepared[i % len(prepared)] for i in range(batch_size)]
    return preparer.collate(items).inputs


def mixed_presence(batch_size: int) -> Tensor:
    """[batch_size, 4] bool: ad i lacks modality m when (i + m) % 3 == 2, so from 3 ads on
    every modality has some rows, fewer than the batch (a trace cannot confuse the two)."""
    ads = torch.arange(batch_size).unsqueeze(1)
    modalities = torch.arange(4).unsqueeze(0)
    return (ads + modalities) % 3 != 2


def random_batch(
    example_inputs: Any, batch_size: int, seed: int, *, dense: bool = False
) -> tuple[Tensor, ...]:
    """Random graph inputs from ``example_inputs(batch_size, presence)`` under a fixed seed.

    Packed batches mix modalities (:func:`mixed_presence`); dense ones give every ad all.
    """
    presence = None if dense else mixed_presence(batch_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        inputs: tuple[Tensor, ...] = example_inputs(batch_size, presence)
    return inputs
