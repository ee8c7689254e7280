"""Sample ads and the synthetic media they carry: images, audio and video made with code.

- :func:`write_demo_media`: the media files of the demo's sample ads (``examples/ads.jsonl``,
  written by ``examples/make_samples.py``);
- :func:`sample_ads`: generated ads over every modality with their media as bytes (export
  calibration and parity checks);
- :data:`SAMPLE_TEXTS`: ad copy, clean and not, for both and for synthetic traffic;
- the generators beneath them, for tests and benchmarks.

Everything is deterministic (seeded) so a sample ad always produces the same scores.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

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


def partly_blurred(
    width: int,
    height: int,
    box: tuple[int, int, int, int],
    *,
    seed: int = 0,
    scene_blur: float = 1.0,
    blur: float = 3.0,
) -> tuple[Image.Image, Image.Image]:
    """A scene with one region out of focus, and the scene itself.

    Args:
        width: Image width.
        height: Image height.
        box: ``(left, top, right, bottom)`` of the blurred region.
        seed: The :func:`banner` scene.
        scene_blur: Softness of the whole scene (1 px: sharp enough for the quality
            analyzer, Laplacian variance about 165 at 640 x 480, where ``box`` reads about 7).
        blur: Gaussian radius of the blurred region.

    Returns:
        The partly blurred image and the scene it was made from.
    """
    scene = banner(width, height, seed=seed, blur=scene_blur)
    image = scene.copy()
    image.paste(scene.filter(ImageFilter.GaussianBlur(blur)).crop(box), box[:2])
    return image, scene


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
    shown_at: Callable[[int], float] | None = None,
) -> Path:
    """Encode ``frames`` frames produced by ``frame_at(index)`` (lossless-ish H.264 by default),
    at ``fps``, or each at its own ``shown_at(index)`` seconds (a variable frame rate, to the
    millisecond)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = frame_at(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        if shown_at is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if codec == "libx264":
            stream.options = {"crf": "1", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else frame_at(i), format="rgb24")
            if shown_at is not None:
                frame.pts, frame.time_base = round(shown_at(i) * 1000), Fraction(1, 1000)
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
        ("sharp", banner(600, 314, seed=1)),
        ("blurry", banner(600, 314, seed=2, blur=6.0)),
        ("tiny", banner(150, 125, seed=4)),
    ):
        media[f"image.{name}"] = png_bytes(image)
    for name, wave in (
        ("calm", tone(4, freqs=(220, 330, 495), amplitude=0.05, noise=0.01)),
        ("loud", tone(3, freqs=(880, 1320), amplitude=0.9, channels=2, noise=0.1)),
    ):
        media[f"audio.{name}"] = wav_bytes(wave, 48_000)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in (
            ("strobe", flashing_frames(160, 90, fps=30, hz=6)),
            ("calm", moving_square(160, 90, fps=30)),
        ):
            path = write_video(Path(tmp) / f"{name}.mp4", frames, frames=60, fps=30)
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


def write_demo_media(folder: Path, *, force: bool = False) -> list[Path]:
    """The media of the demo's sample ads under ``folder`` (existing files kept unless
    ``force``); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)

    def wanted(name: str) -> Path | None:
        path = folder / name
        return path if force or not path.exists() else None

    made = []
    if p := wanted("sharp_banner.png"):
        banner(1200, 628, seed=1).save(p)
        made.append(p)
    if p := wanted("blurry_banner.jpg"):
        banner(1200, 628, seed=2, blur=6.0).save(p, quality=90)
        made.append(p)
    if p := wanted("tiny_banner.png"):
        banner(150, 125, seed=4).save(p)  # a thumbnail: half a 300 x 250 medium rectangle
        made.append(p)
    if p := wanted("calm_voiceover.wav"):  # about -24 LUFS: the ATSC A/85 target
        made.append(write_audio(p, speech_like(8, amplitude=0.2, seed=7), 48_000))
    if p := wanted("loud_jingle.mp3"):
        made.append(
            write_audio(p, tone(6, freqs=(880, 1320), amplitude=0.9, channels=2, noise=0.1), 44_100)
        )
    if p := wanted("strobe.mp4"):
        made.append(write_video(p, flashing_frames(320, 180, fps=30, hz=6), frames=90, fps=30))
    if p := wanted("calm.mp4"):
        made.append(write_video(p, moving_square(320, 180, fps=30), frames=90, fps=30))
    if p := wanted("corrupt.png"):
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
        made.append(p)
    return made
