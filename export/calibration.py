"""Inputs the export checks run on: real prepared ads (a user file or generated) and random ones.

"Real" inputs go through the same preparation as production (decode, resize, tokenize), so the
checks see realistic token lengths, padding, letterboxes and silence; random inputs from the
encoders' ``example_inputs`` cover the rest of the input range.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ensemble import samples
from ensemble.batch import AdPreparer, PreparedAd
from ensemble.reader import read_ads, records_of

log = logging.getLogger(__name__)

SAMPLE_TEXTS = (
    "Fresh organic coffee, roasted this week and delivered to your door. Try two weeks free.",
    "this shit is fucking insane, grab it before these bitches sell out",
    "Summer sale: 30% off all sandals.",
    "Lose 20 pounds in 3 days with this one weird pill doctors hate!",
    "Win big tonight: online casino, 200% deposit bonus, no limits.",
    "New running shoes, light as air.",
    "Craft beer tasting this Friday, 21+ only.",
    "Learn Spanish in 10 minutes a day with our app.",
)


@lru_cache(maxsize=1)
def _sample_media() -> dict[str, bytes]:
    """Encoded sample media made by :mod:`ensemble.samples` (deterministic)."""
    media: dict[str, bytes] = {}
    for name, image in (
        ("sharp", samples.banner(600, 314, seed=1)),
        ("blurry", samples.banner(600, 314, seed=2, blur=6.0)),
        ("tiny", samples.banner(150, 125, seed=4)),
    ):
        media[f"image.{name}"] = samples.png_bytes(image)
    for name, wave in (
        ("calm", samples.tone(4, freqs=(220, 330, 495), amplitude=0.05, noise=0.01)),
        ("loud", samples.tone(3, freqs=(880, 1320), amplitude=0.9, channels=2, noise=0.1)),
    ):
        media[f"audio.{name}"] = samples.wav_bytes(wave, 48_000)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in (
            ("strobe", samples.flashing_frames(160, 90, fps=30, hz=6)),
            ("calm", samples.moving_square(160, 90, fps=30)),
        ):
            path = samples.write_video(Path(tmp) / f"{name}.mp4", frames, frames=60, fps=30)
            media[f"video.{name}"] = path.read_bytes()
    return media


def sample_ads() -> list[dict[str, Any]]:
    """Generated ads over every modality: varied texts, sharp / blurry / tiny images, calm and
    loud audio, calm and strobing video, alone and combined (media as encoded bytes)."""
    media = _sample_media()
    images = [media["image.sharp"], media["image.blurry"], media["image.tiny"]]
    audios = [media["audio.calm"], media["audio.loud"]]
    videos = [media["video.calm"], media["video.strobe"]]
    ads: list[dict[str, Any]] = [
        {"id": f"text-{i}", "text": text} for i, text in enumerate(SAMPLE_TEXTS)
    ]
    ads += [{"id": f"image-{i}", "image": image} for i, image in enumerate(images)]
    ads += [{"id": f"audio-{i}", "audio": audio} for i, audio in enumerate(audios)]
    ads += [{"id": f"video-{i}", "video": video} for i, video in enumerate(videos)]
    ads += [
        {
            "id": f"all-{i}",
            "text": SAMPLE_TEXTS[i],
            "image": images[i % len(images)],
            "audio": audios[i % len(audios)],
            "video": videos[i % len(videos)],
        }
        for i in range(2)
    ]
    return ads


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
        return prepare_ads(preparer, sample_ads())
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
