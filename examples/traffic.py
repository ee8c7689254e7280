"""Synthetic traffic for monitoring: real ads (text, base64 PNG banners, base64 WAV clips).

Used by the monitoring end-to-end test and notebooks/03_export_serve_monitor.ipynb.

``ads(n, seed)`` is traffic like the baseline; ``ads(n, seed, shifted=True)`` is the shifted mix:
no text any more, and loud audio on every ad.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

import numpy as np

from ensemble import samples

WORDS = " ".join(samples.SAMPLE_TEXTS).split()


@lru_cache(maxsize=8)
def _banner(seed: int) -> str:
    return base64.b64encode(
        samples.png_bytes(samples.banner(160 + 40 * seed, 120, seed=seed))
    ).decode()


@lru_cache(maxsize=8)
def _clip(seed: int, loud: bool) -> str:
    amplitude = 0.9 if loud else 0.03 * (1 + seed)
    wave = samples.tone(1.0, rate=16_000, freqs=(220.0 * (1 + seed),), amplitude=amplitude)
    return base64.b64encode(samples.wav_bytes(wave, 16_000)).decode()


def ads(n: int, seed: int, *, shifted: bool = False, prefix: str = "ad") -> list[dict[str, Any]]:
    """``n`` ads; like the baseline, or (``shifted``) without text and with loud audio."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ad: dict[str, Any] = {"id": f"{prefix}-{i}"}
        if not shifted and rng.random() < 0.9:
            ad["text"] = " ".join(rng.choice(WORDS, int(rng.integers(3, 40))))
        if rng.random() < 0.3:
            ad["image"] = {"base64": _banner(int(rng.integers(0, 4)))}
        if shifted or rng.random() < 0.5:
            ad["audio"] = {"base64": _clip(int(rng.integers(0, 4)), loud=shifted)}
        if len(ad) == 1:
            ad["image"] = {"base64": _banner(int(rng.integers(0, 4)))}
        out.append(ad)
    return out
