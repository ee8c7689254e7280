"""Reading and decoding ad media, with the limits a public endpoint needs.

Every failure becomes an :class:`~encoders.base.InputError` naming the field, so one bad
item never takes its batch down. Images decode with Pillow, audio with soundfile (WAV, FLAC,
OGG) and PyAV (MP3, AAC, M4A, ...), video with PyAV, streamed frame by frame into the
encoders' sinks so a long video is never held in memory at full size.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import soundfile
from PIL import Image, ImageOps
from torch import Tensor

from encoders.base import InputError

WARNINGS = "adpolicy.warnings"  # key of a decoded image's ``info`` listing its warnings
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
STORE_URI = re.compile(r"^(s3|gs|gcs|hdfs|viewfs|abfs|abfss|file)://", re.IGNORECASE)
PARTIAL = 0.95  # media decoding to less than this share of its declared length is partial


@dataclass(frozen=True)
class MediaLimits:
    """Bounds on accepted media; the defaults suit display and video ads.

    Attributes:
        max_image_bytes: Largest encoded image.
        max_audio_bytes: Largest encoded audio file.
        max_video_bytes: Largest encoded video file (sizes the server's max request).
        max_pixels: Largest decoded image (width x height); refuses decompression bombs.
        max_seconds: Longest audio or video accepted; longer media is refused, not cropped,
            so a violation late in a long ad can never be silently skipped.
        max_text_chars: Longest ad text accepted.
        max_channels: Most audio channels accepted; more than two are downmixed (with a
            warning), more than this are refused.
        max_record_bytes: Longest record (one line of a JSONL or CSV file, one JSON document
            or request body), checked before it is parsed; sized for an ad with every medium
            at its limit, base64-encoded.
        max_json_depth: Deepest nesting of objects and arrays in one record.

    Every limit is checked before the whole item is decoded: sizes before reading, pixels
    from the header, durations from the container (then while decoding), channels from the
    header.
    """

    max_image_bytes: int = 20 * 1024 * 1024
    max_audio_bytes: int = 50 * 1024 * 1024
    max_video_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_seconds: float = 60.0
    max_text_chars: int = 20_000
    max_channels: int = 8
    max_record_bytes: int = 256 * 1024 * 1024
    max_json_depth: int = 32

    def max_bytes(self, field: str) -> int:
        return {
            "image": self.max_image_bytes,
            "audio": self.max_audio_bytes,
            "video": self.max_video_bytes,
        }[field]


def read_media(
    value: Any,
    field: str,
    *,
    base_dir: Path | None,
    allow_paths: bool,
    limits: MediaLimits,
    any_path: bool = False,
    uris: bool = False,
) -> bytes:
    """The encoded bytes of a media field.

    Args:
        value: ``bytes``; a path string (relative to ``base_dir``), or where paths are not
            allowed a plain base64 string; ``{"path": ...}``; ``{"base64": ...}``; a
            ``data:...;base64,`` URI; or, with ``uris``, an object-store URI (``s3://``,
            ``gs://``, ``hdfs://``, ``file://``, ...: :func:`read_uri`).
        field: Field name, for errors.
        base_dir: Directory relative paths are resolved against.
        allow_paths: False on a server: a path would read the server's own files.
        limits: Size limits.
        any_path: Accept paths leaving ``base_dir`` (see :func:`read_file`).
        uris: Read object-store URIs (offline scoring; never on a server, where they would
            read the server's own storage).

    Returns:
        The encoded media bytes.
    """
    max_bytes = limits.max_bytes(field)
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, Mapping):
        if set(value) == {"base64"}:
            data = _b64decode(value["base64"], field, max_bytes)
        elif set(value) == {"path"} and uris and STORE_URI.match(str(value["path"])):
            data = read_uri(value["path"], field, max_bytes)
        elif set(value) == {"path"}:
            data = _read_path(value["path"], field, base_dir, allow_paths, max_bytes, any_path)
        else:
            raise InputError(
                field, f"expected {{'path': ...}} or {{'base64': ...}}, got keys {sorted(value)}"
            )
    elif isinstance(value, str):
        if not value.strip():
            raise InputError(field, "empty; send the media or leave the field out")
        if value.startswith("data:"):
            _, sep, payload = value.partition(";base64,")
            if not sep:
                raise InputError(field, "a data URI must be base64-encoded (';base64,')")
            data = _b64decode(payload, field, max_bytes)
        elif uris and STORE_URI.match(value):
            data = read_uri(value, field, max_bytes)
        elif not allow_paths:
            data = _b64decode(value, field, max_bytes, "file paths are not accepted here; ")
        else:
            data = _read_path(value, field, base_dir, allow_paths, max_bytes, any_path)
    else:
        raise InputError(
            field,
            f"expected a path, bytes, {{'path': ...}} or {{'base64': ...}}, got {type(value).__name__}",
        )
    if len(data) > max_bytes:
        raise InputError(field, f"{len(data)} bytes exceeds the limit of {max_bytes}", status=413)
    if not data:
        raise InputError(field, "empty media")
    return data


def read_uri(uri: str, field: str, max_bytes: int) -> bytes:
    """The bytes of an object-store URI, read through pyarrow's filesystems (S3, GCS, HDFS,
    Azure, local ``file://``; credentials from the environment, as pyarrow finds them).

    Raises:
        InputError: Naming ``field``: not found, larger than ``max_bytes``, or unreadable.
    """
    from pyarrow import fs

    try:
        store, path = fs.FileSystem.from_uri(uri)
        info = store.get_file_info(path)
        if info.type != fs.FileType.File:
            raise InputError(field, f"{uri!r} is not a file in its store (missing or a folder)")
        if info.size is not None and info.size > max_bytes:
            raise InputError(field, f"{info.size} bytes exceeds the limit of {max_bytes}", 413)
        with store.open_input_stream(path) as stream:
            return bytes(stream.read(max_bytes + 1))  # + 1: a file that grew is still caught
    except InputError:
        raise
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise InputError(field, f"cannot read {uri!r}: {err}") from None


def _b64decode(payload: Any, field: str, max_bytes: int, hint: str = "") -> bytes:
    if not isinstance(payload, str):
        raise InputError(field, f"base64 payload must be a string, got {type(payload).__name__}")
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise InputError(field, f"payload exceeds the limit of {max_bytes} bytes", status=413)
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise InputError(field, f"{hint}invalid base64: {err}") from None


def _read_path(
    path: Any, field: str, base_dir: Path | None, allow_paths: bool, max_bytes: int, any_path: bool
) -> bytes:
    if not allow_paths:
        raise InputError(field, "file paths are not accepted here; send the media as base64")
    return read_file(path, field, base_dir, max_bytes, confine=not any_path)


def read_file(
    path: Any, field: str, base_dir: Path | None, max_bytes: int, *, confine: bool = False
) -> bytes:
    """The bytes of a media file (relative paths against ``base_dir``).

    Refused before anything is opened: a URL (never fetched), a path holding NUL, and with
    ``confine`` a path that resolves (symbolic links followed) outside ``base_dir``.

    Raises:
        InputError: Naming ``field``: not a path, refused, unreadable, or larger than
            ``max_bytes``.
    """
    if not isinstance(path, str | os.PathLike):
        raise InputError(field, f"path must be a string, got {type(path).__name__}")
    text = os.fspath(path)
    if "\0" in str(text):
        raise InputError(field, "the path holds a NUL character")
    if URL.match(str(text)):
        raise InputError(field, "URLs are not fetched; download the media and give its path")
    full = Path(path)
    if not full.is_absolute() and base_dir is not None:
        full = base_dir / full
    if confine and base_dir is not None:
        try:
            inside = full.resolve().is_relative_to(base_dir.resolve())
        except (OSError, RuntimeError, ValueError) as err:
            raise InputError(field, f"cannot resolve {str(path)!r}: {err}") from None
        if not inside:
            raise InputError(
                field,
                f"{str(path)!r} is outside the folder of the ads file "
                "(allow it with --allow-any-path)",
            )
    try:
        size = full.stat().st_size
        if size > max_bytes:
            raise InputError(field, f"{size} bytes exceeds the limit of {max_bytes}", status=413)
        return full.read_bytes()
    except OSError as err:
        raise InputError(field, f"cannot read {str(path)!r}: {err.strerror or err}") from None


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image scaled to 8 bits ("L").

    Pillow's own conversion of these modes to RGB clips every value above 255, so a 16-bit
    PNG of any real content turns almost white. Scaled: 16-bit integers by 1/257 (65535 ->
    255); 32-bit integers the same when any value exceeds 255 (16-bit data widened on load),
    else as they are; floats from 0-1 to 0-255 when none exceeds 1, else clipped to 0-255.
    """
    if img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64) / 257.0
    elif img.mode == "I":
        values = np.asarray(img, dtype=np.float64)
        if values.max(initial=0) > 255:
            values = values / 257.0
    elif img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
    else:
        return img
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def decode_image(data: bytes, limits: MediaLimits) -> Image.Image:
    """Decode an image to RGB, applying its EXIF orientation, transparency flattened onto
    white (listed in ``info[WARNINGS]``), deep single-channel images scaled to 8 bits
    (:func:`_eight_bit`); refuses oversized images."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > limits.max_pixels:
                raise InputError(
                    "image",
                    f"{img.width}x{img.height} pixels exceeds the limit of {limits.max_pixels}",
                    status=413,
                )
            img.load()
            upright = _eight_bit(ImageOps.exif_transpose(img))
            warnings: list[str] = []
            if upright.has_transparency_data:
                rgba = upright.convert("RGBA")
                if rgba.getchannel("A").getextrema() != (255, 255):
                    warnings.append("image: transparent pixels flattened onto white")
                upright = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            rgb = upright.convert("RGB")
            rgb.info[WARNINGS] = warnings
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise InputError("image", f"cannot decode image: {err}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise InputError("image", "image has no pixels")
    return rgb


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio at its source rate.

    Attributes:
        samples: ``[channels, frames]`` float32 in [-1, 1], at most two channels.
        sample_rate: Samples per second.
        warnings: What decoding changed or could not read (downmix, a partial decode).
    """

    samples: np.ndarray
    sample_rate: int
    warnings: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def decode_audio(data: bytes, limits: MediaLimits) -> AudioClip:
    """Decode WAV/FLAC/OGG with soundfile, anything else FFmpeg reads with PyAV; more than two
    channels are averaged to mono (with a warning), more than ``max_channels`` refused."""
    try:
        clip = _decode_soundfile(data, limits)
    except soundfile.LibsndfileError:
        clip = _decode_pyav_audio(data, limits)
    if clip.samples.shape[1] == 0:
        raise InputError("audio", "audio has no samples")
    if not np.isfinite(clip.samples).all():
        raise InputError("audio", "audio holds NaN or infinite samples")
    _check_duration("audio", clip.duration, limits)
    channels = clip.samples.shape[0]
    if channels > 2:
        mono = clip.samples.mean(axis=0, keepdims=True)
        note = f"audio: {channels} channels downmixed to mono"
        clip = dataclasses.replace(clip, samples=mono, warnings=(*clip.warnings, note))
    return clip


def _check_channels(channels: int, limits: MediaLimits) -> None:
    if not 0 < channels <= limits.max_channels:
        raise InputError(
            "audio", f"{channels} channels; 1 to {limits.max_channels} are accepted", status=413
        )


def _partial(field: str, decoded: float, declared: float | None, unit: str) -> tuple[str, ...]:
    """A warning when media decoded to less than it declares."""
    if declared is None or decoded >= PARTIAL * declared:
        return ()
    return (f"{field}: only {decoded:g} of the {declared:g} {unit} it declares could be decoded",)


def _check_duration(field: str, seconds: float, limits: MediaLimits) -> None:
    if seconds > limits.max_seconds:
        raise InputError(
            field,
            f"duration {seconds:.1f} s exceeds the limit of {limits.max_seconds:g} s",
            status=413,
        )


def _decode_soundfile(data: bytes, limits: MediaLimits) -> AudioClip:
    with soundfile.SoundFile(io.BytesIO(data)) as f:
        if f.samplerate <= 0:
            raise InputError("audio", "invalid sample rate")
        _check_duration("audio", f.frames / f.samplerate, limits)
        _check_channels(f.channels, limits)
        samples = f.read(dtype="float32", always_2d=True)
    declared = _wav_data_bytes(data)
    warnings = _partial("audio", len(data), declared, "bytes") if declared else ()
    return AudioClip(np.ascontiguousarray(samples.T), int(f.samplerate), warnings)


def _wav_data_bytes(data: bytes) -> int | None:
    """The end of a WAV's samples as its header declares them (libsndfile silently reads
    what is there), or None for another format."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if data[offset : offset + 4] == b"data":
            return offset + 8 + size
        offset += 8 + size + size % 2
    return None


def _decode_pyav_audio(data: bytes, limits: MediaLimits) -> AudioClip:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InputError("audio", "cannot decode audio: no audio stream found")
            stream = container.streams.audio[0]
            declared = container.duration / 1_000_000 if container.duration else None
            if declared is not None:
                _check_duration("audio", declared, limits)
            _check_channels(stream.channels, limits)
            rate = stream.rate
            resampler = av.AudioResampler(format="fltp", rate=rate)
            chunks: list[np.ndarray] = []
            warnings: tuple[str, ...] = ()
            try:
                for frame in container.decode(stream):
                    chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
                    if sum(c.shape[1] for c in chunks) > (limits.max_seconds + 1) * rate:
                        _check_duration("audio", sum(c.shape[1] for c in chunks) / rate, limits)
            except (av.FFmpegError, ValueError, OSError, IndexError) as err:
                if not chunks:
                    raise
                warnings = (f"audio: decoding stopped early ({err})",)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as err:
        raise InputError("audio", f"cannot decode audio: {err}") from None
    if not chunks or not rate:
        raise InputError("audio", "cannot decode audio: no audio frames")
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    seconds = round(samples.shape[1] / rate, 3)
    warnings = warnings or _partial("audio", seconds, declared, "seconds")
    return AudioClip(samples, int(rate), warnings)


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a video before its frames are decoded.

    Attributes:
        fps: Average frame rate.
        num_frames: Frame count from the container, or estimated from duration x fps.
        width: Frame width in pixels.
        height: Frame height in pixels.
        warnings: What could not be decoded (a cut file).
    """

    fps: float
    num_frames: int
    width: int
    height: int
    warnings: tuple[str, ...] = ()


class FrameSink(Protocol):
    """Receives a video's frames one by one (for one encoder) and yields its tensors."""

    def add(self, frame: av.VideoFrame) -> None: ...

    def finish(self) -> dict[str, Tensor]: ...


class VideoPreparer(Protocol):
    """Preparation of a video encoder: a sink per video, a placeholder when absent."""

    def start(self, info: VideoInfo) -> FrameSink: ...

    def placeholder(self) -> dict[str, Tensor]: ...


def decode_video(
    data: bytes, preparers: Sequence[VideoPreparer], limits: MediaLimits
) -> tuple[list[dict[str, Tensor]], VideoInfo]:
    """Decode a video once, streaming every frame into each preparer's sink.

    Returns:
        One tensor dict per preparer, in order, and the video's info with the frame count
        actually decoded.
    """
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InputError("video", "cannot decode video: no video stream found")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            info = _video_info(container, stream, limits)
            sinks = [p.start(info) for p in preparers]
            max_frames = math.ceil(limits.max_seconds * info.fps) + 1
            count = 0
            warnings: tuple[str, ...] = ()
            try:
                for frame in container.decode(stream):
                    count += 1
                    if count > max_frames:
                        _check_duration("video", count / info.fps, limits)
                    for sink in sinks:
                        sink.add(frame)
            except (av.FFmpegError, ValueError, OSError, IndexError, ZeroDivisionError) as err:
                if count == 0:
                    raise
                warnings = (f"video: decoding stopped after {count} frames ({err})",)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError, ZeroDivisionError) as err:
        raise InputError("video", f"cannot decode video: {err}") from None
    if count == 0:
        raise InputError("video", "cannot decode video: no frames")
    warnings = warnings or _partial("video", count, info.num_frames, "frames")
    return [sink.finish() for sink in sinks], dataclasses.replace(
        info, num_frames=count, warnings=warnings
    )


def _video_info(container: Any, stream: Any, limits: MediaLimits) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= 1000:
        raise InputError("video", f"cannot decode video: invalid frame rate {fps}")
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration is not None:
        _check_duration("video", duration, limits)
    frames = stream.frames or (round(duration * fps) if duration else 0)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise InputError("video", "cannot decode video: no picture size")
    if width * height > limits.max_pixels:
        raise InputError("video", f"{width}x{height} frames exceed the pixel limit", status=413)
    return VideoInfo(fps=fps, num_frames=max(int(frames), 1), width=width, height=height)
