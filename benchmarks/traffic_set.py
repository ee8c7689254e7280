"""A realistic traffic set for the length-bucketing benchmarks: a JSONL of ads and its media.

The mix (fixed by ``--seed``):

- text on every ad but the media-only ones: half with lengths like the Davidson tweets (MiniLM
  wordpieces: median 35, 90th percentile 55), half like short ad copy (median 14, 90th
  percentile 24); lengths are log-normal with those quantiles, drawn per ad, and the text is
  built from ad-copy words until the tokenizer counts that many wordpieces;
- 30 % of ads with an image (a banner of 300 to 1200 pixels wide);
- 30 % with audio of 5 to 30 s (voice-like, 16 or 44.1 kHz, mono or stereo);
- 10 % with video of 5 to 30 s (320 x 180 at 24, 25 or 30 fps; one in five strobes).

Media are a pool of distinct files (``--pool`` per kind) that the ads draw from, so generating
the set costs seconds, not one encode per ad. The same set feeds a run before and after a
change (the old behaviour kept as an option), which is what makes their ratio meaningful.

    python -m benchmarks.traffic_set OUT_DIR [--ads 2000] [--pool 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from encoders.base import resolve_model_dir
from encoders.text import DEFAULT_TEXT_MODEL
from ensemble import samples

# (median, 90th percentile) of the wordpiece count of each text profile
TEXT_PROFILES = {"tweet": (35, 55), "ad_copy": (14, 24)}
SHARES = {"image": 0.3, "audio": 0.3, "video": 0.1}
SECONDS = (5.0, 30.0)
Z90 = 1.2816  # the standard normal's 90th percentile


def token_length(profile: str, rng: np.random.Generator) -> int:
    """A wordpiece count drawn log-normally with the profile's median and 90th percentile."""
    median, p90 = TEXT_PROFILES[profile]
    sigma = math.log(p90 / median) / Z90
    return max(3, round(median * math.exp(sigma * rng.standard_normal())))


def text_of(length: int, words: list[str], rng: np.random.Generator, tokenizer: Any) -> str:
    """Ad-copy words until the tokenizer counts ``length`` wordpieces (without CLS / SEP)."""
    chosen: list[str] = []
    while len(tokenizer.tokenize(" ".join(chosen))) < length:
        chosen.append(str(rng.choice(words)))
    return " ".join(chosen)


def media_pool(out: Path, size: int, rng: np.random.Generator) -> dict[str, list[str]]:
    """``size`` images, audio clips and videos under ``out/media``; their relative paths."""
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    pool: dict[str, list[str]] = {"image": [], "audio": [], "video": []}
    for i in range(size):
        width = int(rng.integers(300, 1201))
        path = media / f"banner_{i}.png"
        samples.banner(width, max(100, width // 2), seed=i).save(path)
        pool["image"].append(path.relative_to(out).as_posix())

        seconds = float(rng.uniform(*SECONDS))
        rate = int(rng.choice([16_000, 44_100]))
        wave = samples.speech_like(seconds, rate=rate, amplitude=0.2, seed=i)
        if rng.random() < 0.5:
            wave = np.repeat(wave, 2, axis=1)
        pool["audio"].append(
            samples.write_audio(media / f"voice_{i}.wav", wave, rate).relative_to(out).as_posix()
        )

        fps = int(rng.choice([24, 25, 30]))
        frames = round(float(rng.uniform(*SECONDS)) * fps)
        frame_at = (
            samples.flashing_frames(320, 180, fps=fps, hz=6)
            if i % 5 == 0
            else samples.moving_square(320, 180, fps=fps)
        )
        path = samples.write_video(media / f"clip_{i}.mp4", frame_at, frames=frames, fps=fps)
        pool["video"].append(path.relative_to(out).as_posix())
    return pool


def make(out: Path, *, ads: int, pool_size: int, seed: int) -> Path:
    """Write ``out/ads.jsonl`` and ``out/media/``; returns the JSONL's path."""
    from transformers import AutoTokenizer

    rng = np.random.default_rng(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_dir(DEFAULT_TEXT_MODEL)))
    words = " ".join(samples.SAMPLE_TEXTS).split()
    pool = media_pool(out, pool_size, rng)
    lines = []
    for i in range(ads):
        ad: dict[str, Any] = {"id": f"traffic-{i}"}
        for kind, share in SHARES.items():
            if rng.random() < share:
                ad[kind] = str(rng.choice(pool[kind]))
        if len(ad) == 1 or rng.random() < 0.9:
            profile = "tweet" if rng.random() < 0.5 else "ad_copy"
            ad["text"] = text_of(token_length(profile, rng), words, rng, tokenizer)
        lines.append(json.dumps(ad))
    path = out / "ads.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (ads.jsonl, media/)")
    parser.add_argument("--ads", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=24, help="distinct files per media kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = make(args.out, ads=args.ads, pool_size=args.pool, seed=args.seed)
    ads = [json.loads(line) for line in path.read_text().splitlines()]
    print(f"{len(ads)} ads written to {path}")
    for kind in ("text", *SHARES):
        print(f"  {kind:6s} {sum(kind in ad for ad in ads) / len(ads):6.1%}")


if __name__ == "__main__":
    main()
