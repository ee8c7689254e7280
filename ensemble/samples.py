"""Synthetic media for samples, tests and benchmarks: images, audio and video made with code.

Everything is deterministic (seeded) so a sample ad always produces the same scores.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image, ImageDraw, ImageFilter

Frame = np.ndarray  # [height, width, 3] uint8


def banner(width: int, height: int, *, seed: int = 0, blur: float = 0.0) -> Image.Image:
    """A display-ad-like picture: gradient background, shapes, text-like bars and fine detail."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [120 + 100 * x / width, 80 + 120 * y / height, 200 - 100 * x / width], axis=-1
    ).astype(np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        size = int(rng.integers(min(width, height) // 8, min(width, height) // 3))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse((x0, y0, x0 + size, y0 + size), fill=color, outline=(0, 0, 0), width=3)
    for row in range(4):
        top = height // 10 + row * height // 12
        draw.rectangle(
            (width // 12, top, width // 2, top + max(2, height // 40)), fill=(20, 20, 20)
        )
    noise = rng.integers(0, 40, (height, width, 1), dtype=np.uint8)
    img = Image.fromarray(
        np.clip(np.asarray(img, dtype=np.int16) + noise - 20, 0, 255).astype(np.uint8)
    )
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur else img


def tone(
    seconds: float,
    *,
    rate: int = 48_000,
    freqs: tuple[float, ...] = (440.0,),
    amplitude: float = 0.1,
    channels: int = 1,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Sum of sines plus optional white noise: ``[frames, channels]`` float32."""
    t = np.arange(round(seconds * rate)) / rate
    wave = np.sin(2 * np.pi * np.outer(t, freqs)).mean(axis=1) * amplitude
    if noise:
        wave = wave + np.random.default_rng(seed).normal(0, noise, t.shape)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def speech_like(
    seconds: float, *, rate: int = 48_000, amplitude: float = 0.1, seed: int = 0
) -> np.ndarray:
    """A voice-like signal: ``[frames, 1]`` float32.

    A gliding 110-190 Hz pitch with harmonics falling off to 4 kHz, cut into syllables
    (about four a second) and words, with silent pauses of 0.2-0.6 s between words: the
    level changes and silence gaps that BS.1770's gating is for.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    pitch = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    harmonics = np.arange(1, int(4000 / 190) + 1)
    voiced = (np.sin(np.outer(phase, harmonics)) / harmonics).sum(axis=1)
    voiced += 0.05 * rng.standard_normal(n)
    envelope = np.zeros(n)
    start = 0
    while start < n:
        word = round(rng.uniform(0.6, 1.8) * rate)
        syllables = np.sin(np.pi * np.linspace(0, round(word / rate * 4), min(word, n - start)))
        envelope[start : start + word] = np.abs(syllables) ** 0.5
        start += word + round(rng.uniform(0.2, 0.6) * rate)
    wave = voiced * envelope
    return (wave / np.abs(wave).max() * amplitude)[:, None].astype(np.float32)


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """``[frames, channels]`` float samples encoded as WAV."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


def write_audio(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write ``[frames, channels]`` float samples; the suffix picks the format.

    WAV/FLAC/OGG go through soundfile, MP3/M4A/AAC through PyAV (FFmpeg encoders).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".wav", ".flac", ".ogg"):
        soundfile.write(path, samples, rate)
        return path
    codec = {".mp3": "libmp3lame", ".m4a": "aac", ".aac": "aac"}[path.suffix.lower()]
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format="mp4" if path.suffix == ".m4a" else None) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        planar = np.ascontiguousarray(samples.T.astype(np.float32))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_video(
    path: str | Path,
    frame_at: Callable[[int], Frame],
    *,
    frames: int,
    fps: int = 30,
    codec: str = "libx264",
) -> Path:
    """Encode ``frames`` frames produced by ``frame_at(index)`` (lossless-ish H.264 by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = frame_at(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "1", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else frame_at(i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def flashing_frames(
    width: int,
    height: int,
    *,
    fps: int,
    hz: float,
    area: float = 1.0,
    dark: int = 0,
    bright: int = 255,
    red: bool = False,
) -> Callable[[int], Frame]:
    """Frames alternating dark/bright ``hz`` times a second over the left ``area`` of the frame."""

    def frame_at(i: int) -> Frame:
        on = int(i * 2 * hz / fps) % 2 == 1
        frame = np.full((height, width, 3), 128, np.uint8)
        cols = max(1, round(width * area))
        if red:
            frame[:, :cols] = (bright, 0, 0) if on else (dark, dark, dark)
        else:
            frame[:, :cols] = bright if on else dark
        return frame

    return frame_at


def moving_square(width: int, height: int, *, fps: int) -> Callable[[int], Frame]:
    """A calm clip: a square gliding over a gradient (no flashes)."""
    background = np.asarray(banner(width, height, seed=3))

    def frame_at(i: int) -> Frame:
        frame = background.copy()
        x = int((i / fps) * width / 4) % (width - 40)
        frame[height // 3 : height // 3 + 40, x : x + 40] = (250, 250, 250)
        return frame

    return frame_at
