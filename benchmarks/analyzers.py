"""Cost of the analyzers beside the learned encoders of the same modality, in one run.

For each encoder: preparation (decoding included) per second of media (per image for images),
and the graph (eager forward, batch 1) per item. A graph runs on its whole fixed-size input
whatever the clip's length (flash: 60 s x 60 fps of grids; loudness: 60 s of 48 kHz stereo;
logmel_cnn: 10 s; r3d_18 samples 16 frames from any length), so the last column divides the
graph time by the seconds its input holds.

    .venv/bin/python -m benchmarks.analyzers [--seconds 10] [--size 640x360] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import best
from encoders import get_encoder, get_entry, get_preparer
from encoders.media import MediaLimits, decode_audio, decode_image, decode_video
from ensemble import samples

LIMITS = MediaLimits()
ROWS = (
    ("video", "r3d_18"),
    ("video", "flash"),
    ("audio", "logmel_cnn"),
    ("audio", "loudness"),
    ("image", "resnet18"),
    ("image", "image_quality"),
)


def media(folder: Path, seconds: float, width: int, height: int) -> dict[str, bytes]:
    """A strobing video, a stereo 44.1 kHz voice-like track and a banner, encoded."""
    fps = 30
    video = samples.write_video(
        folder / "clip.mp4",
        samples.flashing_frames(width, height, fps=fps, hz=4, area=0.5),
        frames=round(seconds * fps),
        fps=fps,
    )
    voice = samples.speech_like(seconds, rate=44_100, amplitude=0.3)
    audio = samples.write_audio(folder / "clip.wav", np.repeat(voice, 2, axis=1), 44_100)
    image = samples.png_bytes(samples.banner(1200, 628, seed=1))
    return {"video": video.read_bytes(), "audio": audio.read_bytes(), "image": image}


def prepare(modality: str, data: bytes, preparer: Any) -> dict[str, torch.Tensor]:
    if modality == "video":
        (item,), _ = decode_video(data, [preparer], LIMITS)
        return item
    decoded = decode_audio(data, LIMITS) if modality == "audio" else decode_image(data, LIMITS)
    return preparer.prepare(decoded)


def capacity_seconds(name: str) -> float | None:
    """Seconds of media the encoder's fixed input holds (None: it samples any length)."""
    settings = get_entry(name).make_settings()
    return getattr(settings, "max_seconds", None) or getattr(settings, "clip_seconds", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test clips")
    parser.add_argument("--size", default="640x360", help="video frame size, WxH")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = media(Path(tmp), args.seconds, width, height)

    print(
        f"clips: {args.seconds:g} s video {width}x{height} at 30 fps (H.264), {args.seconds:g} s"
        f" stereo 44.1 kHz WAV, one 1200x628 PNG; torch threads {args.threads}; best of"
        f" {args.repeat}\n"
    )
    header = (
        f"{'modality':<8} {'encoder':<14} {'kind':<9} {'prep ms':>9} {'per':<9} "
        f"{'graph ms/item':>14} {'graph ms per s of input':>24}"
    )
    print(header)
    print("-" * len(header))
    for modality, name in ROWS:
        preparer = get_preparer(name)
        encoder = get_encoder(name).eval()
        item = prepare(modality, data[modality], preparer)
        inputs = tuple(item[s.name].unsqueeze(0) for s in encoder.input_spec)
        with torch.inference_mode():
            encoder(*inputs)  # warm-up
            graph = best(partial(encoder, *inputs), args.repeat)
        prep = best(partial(prepare, modality, data[modality], preparer), args.repeat)
        per = "image" if modality == "image" else "s media"
        prep_ms = 1000 * prep / (1 if modality == "image" else args.seconds)
        capacity = capacity_seconds(name)
        per_input = "-" if capacity is None else f"{1000 * graph / capacity:.2f}"
        print(
            f"{modality:<8} {name:<14} {get_entry(name).kind:<9} {prep_ms:>9.1f} {per:<9} "
            f"{1000 * graph:>14.1f} {per_input:>24}"
        )


if __name__ == "__main__":
    main()
