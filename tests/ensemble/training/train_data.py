"""Tiny labelled data for the training tests: a text-only config over the tiny BERT."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ensemble import ModelConfig

WORDS = ["coffee", "shoes", "sale", "fresh", "weekly", "damn", "idiot", "stupid", "vermin", "scum"]
RUDE = {"damn", "idiot", "stupid", "vermin", "scum"}
HATEFUL = {"vermin", "scum"}


def text_config(tiny_bert_dir: Path, *, lexicon_dim: int = 0, **overrides: Any) -> ModelConfig:
    """Two text policies scored by one tiny-BERT head (max_length 16), optionally with a
    lexicon of ``lexicon_dim``."""
    text = {"type": "hf_text", "model_dir": str(tiny_bert_dir), "max_length": 16}
    data: dict[str, Any] = {
        "name": "tiny-text",
        "version": "test",
        "encoders": {"text": {**text, "lexicon_dim": lexicon_dim}},
        "policies": [
            {"name": "offensive_language", "heads": ["text"]},
            {"name": "hate_speech", "heads": ["text"]},
        ],
        "head_dropout": 0.0,
    }
    data.update(overrides)
    return ModelConfig.from_json(data)


def keyword_ads(count: int, seed: int, *, prefix: str = "ad") -> list[dict[str, Any]]:
    """Ads of 2 to 6 words; offensive when a rude word occurs, hate when a hateful one does.

    Every class occurs (the first three ads are one of each).
    """
    rng = random.Random(seed)
    ads = []
    for i in range(count):
        words = rng.choices(WORDS, k=rng.randint(2, 6))
        if i < 3:
            words = [["coffee", "sale"], ["damn", "shoes"], ["vermin", "idiot"]][i]
        hate = bool(HATEFUL & set(words))
        rude = bool(RUDE & set(words))
        ads.append(
            {
                "id": f"{prefix}-{i}",
                "text": " ".join(words),
                "labels": {"offensive_language": int(rude), "hate_speech": int(hate)},
                "meta": {"class": "hate" if hate else "offensive" if rude else "neither"},
            }
        )
    return ads


def write_jsonl(ads: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(ad) + "\n" for ad in ads))
    return path
