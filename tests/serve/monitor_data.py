"""Synthetic capture records: a multimodal ad stream whose scores, inputs and labels can drift.

Every record goes through :func:`serve.capture.capture_record`, as the handler's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve.capture import capture_record

MODEL = {"name": "synthetic", "version": "1"}
THRESHOLD = 0.5


@dataclass(frozen=True)
class Traffic:
    """How the synthetic ads are drawn.

    Attributes:
        offensive_shift: Added to the offensive_language scores (a score drift).
        drop: A modality that no ad carries (a dropped modality).
        loud: Audio much louder than usual (an input drift).
        informative: Whether scores follow the labels (False: a model gone blind).
        text_rate: Share of ads with text.
    """

    offensive_shift: float = 0.0
    drop: str | None = None
    loud: bool = False
    informative: bool = True
    text_rate: float = 0.9


def _policy(score: float) -> dict[str, Any]:
    score = float(np.clip(score, 0.0, 1.0))
    return {"status": "scored", "score": score, "flag": score >= THRESHOLD, "threshold": THRESHOLD}


def records(
    n: int, seed: int, traffic: Traffic = Traffic(), *, prefix: str = "ad"
) -> Iterator[dict[str, Any]]:
    """``n`` capture records; each also carries its true ``labels``, as a manifest row would."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        image = rng.random() < 0.6
        # Every ad has an image or audio, so dropping text leaves no ad empty.
        carried = {
            "text": rng.random() < traffic.text_rate,
            "image": image,
            "audio": rng.random() < 0.2 if image else True,
        }
        carried = {m: c and m != traffic.drop for m, c in carried.items()}
        stats: dict[str, float] = {}
        policies: dict[str, Any] = {}
        measurements: dict[str, float] = {}
        labels: dict[str, int] = {}
        if carried["text"]:
            stats["text_chars"] = float(rng.integers(20, 300))
            stats["text_tokens"] = float(min(128, stats["text_chars"] // 4 + rng.integers(0, 8)))
            for policy, rate in (("offensive_language", 0.2), ("hate_speech", 0.05)):
                label = int(rng.random() < rate)
                signal = label if traffic.informative else int(rng.random() < rate)
                score = rng.beta(6, 2) if signal else rng.beta(1, 8)
                shift = traffic.offensive_shift if policy == "offensive_language" else 0.0
                policies[policy] = _policy(score + shift)
                labels[policy] = label
        if carried["image"]:
            width, height = [(300, 250), (728, 90), (1200, 628)][int(rng.integers(0, 3))]
            stats.update(image_width=width, image_height=height, image_brightness=rng.beta(5, 5))
        if carried["audio"]:
            rms = rng.normal(-8 if traffic.loud else -26, 3)
            stats.update(audio_seconds=rng.uniform(5, 30), audio_sample_rate=48_000.0)
            stats["audio_rms_db"] = rms
            measurements["loudness.lufs"] = rms + rng.normal(2, 1)
            policies["loudness"] = _policy(1 / (1 + np.exp(-(measurements["loudness.lufs"] + 22))))
        result = {
            "id": f"{prefix}-{i}",
            "status": "ok",
            "model": MODEL,
            "flags": [p for p, e in policies.items() if e["flag"]],
            "policies": policies,
            "measurements": measurements,
        }
        record = capture_record(result, stats, timestamp=1_700_000_000 + i)
        record["labels"] = labels  # read back by serve.monitor.quality.labels_of
        yield record
