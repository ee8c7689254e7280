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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

import av
import numpy as np
import soundfile
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from encoders.base import InputError

WARNINGS = "adpolicy.warnings"  # key of a decoded image's ``info`` listing its warnings
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
STORE_URI = re.compile(r"^(s3|gs|gcs|hdfs|viewfs|abfs|abfss|file)://", re.IGNORECASE)
DATA_URI = re.compile(r"data:[^,]*?;base64,", re.IGNORECASE)
MATROSKA_DURATION = re.compile(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
SHOWN_PATH = 200  # characters of a path an error message quotes
PNG = b"\x89PNG\r\n\x1a\n"  # the signature of a PNG (and an APNG)
MAX_FPS = 1000.0  # highest frame rate accepted; also bounds the frames a duration holds
PARTIAL = 0.95  # media decoding to less than this share of its declared length is partial
# AAC and MP3 encoders pad a clip to whole frames (1 024-2 048 samples, and the priming): a
# 60.0 s ad decodes to about 60.05 s. Audio up to this much over the limit is cut to it.
ENCODER_PADDING_S = 0.1


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
        max_channels: Most audio channels accepted (7.1 is 8); more are refused.
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
        value: ``bytes``; a path (string or ``os.PathLike``, relative to ``base_dir``), or
            where paths are not allowed a plain base64 string; ``{"path": ...}``;
            ``{"base64": ...}``; a ``data:...;base64,`` URI; or, with ``uris``, an
            object-store URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``, ...:
            :func:`read_uri`).
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
            data = _read_store(value["path"], field, base_dir, max_bytes, any_path)
        elif set(value) == {"path"}:
            data = _read_path(value["path"], field, base_dir, allow_paths, max_bytes, any_path)
        else:
            raise InputError(
                field, f"expected {{'path': ...}} or {{'base64': ...}}, got keys {sorted(value)}"
            )
    elif isinstance(value, os.PathLike):  # a pathlib.Path from Python callers
        data = _read_path(value, field, base_dir, allow_paths, max_bytes, any_path)
    elif isinstance(value, str):
        if not value.strip():
            raise InputError(field, "empty; send the media or leave the field out")
        if value[:5].lower() == "data:":  # a URI's scheme is case-insensitive (RFC 3986)
            if not (uri := DATA_URI.match(value)):
                raise InputError(field, "a data URI must be base64-encoded (';base64,')")
            data = _b64decode(value[uri.end() :], field, max_bytes)
        elif uris and STORE_URI.match(value):
            data = _read_store(value, field, base_dir, max_bytes, any_path)
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


def _read_store(
    uri: str, field: str, base_dir: Path | None, max_bytes: int, any_path: bool
) -> bytes:
    """:func:`read_uri`, a local ``file://`` URI held to ``base_dir`` as a path is: otherwise it
    would read any file on the machine the paths of the ads file may not reach."""
    if not any_path and base_dir is not None and uri.lower().startswith("file://"):
        _confine(Path(url2pathname(urlsplit(uri).path)), uri, field, base_dir)
    return read_uri(uri, field, max_bytes)


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
        _confine(full, path, field, base_dir)
    try:
        size = full.stat().st_size
        if size > max_bytes:
            raise InputError(field, f"{size} bytes exceeds the limit of {max_bytes}", status=413)
        return full.read_bytes()
    except OSError as err:
        raise InputError(field, f"cannot read {_shown(path)}: {err.strerror or err}") from None


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image scaled to 8 bits ("L"; "LA"
    where a transparency key, PNG's tRNS, makes the pixels of one grey value transparent).

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
    grey = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    key = img.info.get("transparency")  # a PNG tRNS grey value: those pixels are transparent
    if isinstance(key, int | float):
        grey.putalpha(Image.fromarray(np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)))
    return grey


def decode_image(data: bytes, limits: MediaLimits) -> Image.Image:
    """Decode an image to RGB, applying its EXIF orientation, transparency flattened onto
    white and an animation's first frame taken (each listed in ``info[WARNINGS]``), deep
    single-channel images scaled to 8 bits (:func:`_eight_bit`); refuses oversized images."""
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
            if (frames := getattr(img, "n_frames", 1)) > 1:
                warnings.append(
                    f"image: {frames} pages; scored on its first"
                    if img.format == "TIFF"
                    else f"image: animated ({frames} frames); scored on its first (send it as "
                    "video to have every frame checked, for flashing too)"
                )
            rgb, flattened = _on_white(upright)
            if flattened:
                warnings.append("image: transparent pixels flattened onto white")
            rgb.info[WARNINGS] = warnings
    except InputError:
        raise
    # Pillow refuses an image of over twice its own bound (and warns, or with warnings as
    # errors refuses, over its bound) before our check sees the size: the same refusal
    except Image.DecompressionBombError:
        raise _too_many_pixels(2 * (Image.MAX_IMAGE_PIXELS or 0), limits) from None
    except Image.DecompressionBombWarning:
        raise _too_many_pixels(Image.MAX_IMAGE_PIXELS or 0, limits) from None
    except UnidentifiedImageError:
        raise InputError("image", "cannot decode image: not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError("image", f"cannot decode image: {err}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise InputError("image", "image has no pixels")
    return rgb


def _on_white(img: Image.Image) -> tuple[Image.Image, bool]:
    """``img`` in RGB, any transparency flattened onto white, and whether any pixel was
    transparent (scoring the colours under a transparent alpha would judge unseen pixels)."""
    if not img.has_transparency_data:
        return img.convert("RGB"), False
    rgba = img.convert("RGBA")
    transparent = rgba.getchannel("A").getextrema() != (255, 255)
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return flat, transparent


def _too_many_pixels(bound: int, limits: MediaLimits) -> InputError:
    """The refusal of an image Pillow found to have more than ``bound`` pixels (the limit is
    ``max_pixels``, or Pillow's bound where that is lower)."""
    limit = min(bound, limits.max_pixels)
    return InputError("image", f"more than {bound} pixels exceeds the limit of {limit}", 413)


# FFmpeg's channel names in the order of the WAVE_FORMAT_EXTENSIBLE channel mask's bits (FFmpeg
# numbers its first 18 channels the same way)
MASK_CHANNELS = (
    "FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC", "BC",
    "SL", "SR", "TC", "TFL", "TFC", "TFR", "TBL", "TBC", "TBR",
)  # fmt: skip
# The order a file without a channel layout is read in, by channel count: the mask's bit order
# (WAV, FLAC, SMPTE): 5.1 is L R C LFE Ls Rs, 7.1 adds the side pair after the back pair.
STANDARD_LAYOUTS = {
    1: ("FC",),
    2: ("FL", "FR"),
    3: ("FL", "FR", "FC"),
    4: ("FL", "FR", "BL", "BR"),
    5: ("FL", "FR", "FC", "BL", "BR"),
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
    7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}


def standard_layout(channels: int) -> tuple[str, ...]:
    """The channel names of a file of ``channels`` channels that names none
    (:data:`STANDARD_LAYOUTS`; beyond 8, the first 8 then unnamed ``""`` channels)."""
    named = STANDARD_LAYOUTS[min(channels, 8)]
    return (*named, *[""] * (channels - len(named)))


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio at its source rate, every channel kept.

    Attributes:
        samples: ``[channels, frames]`` float32 in [-1, 1].
        sample_rate: Samples per second.
        warnings: What decoding changed or could not read (a partial decode).
        layout: FFmpeg's name of each channel (``"FL"``, ``"FC"``, ``"LFE"``, ``"SL"``, ...),
            from the file where it says (PyAV's layout, a WAV's channel mask); empty: the
            standard order for the channel count (:func:`standard_layout`).
    """

    samples: np.ndarray
    sample_rate: int
    warnings: tuple[str, ...] = ()
    layout: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def channel_names(self) -> tuple[str, ...]:
        """One name per channel: ``layout``, or the standard order where it is empty."""
        return self.layout or standard_layout(self.samples.shape[0])


def decode_audio(data: bytes, limits: MediaLimits) -> AudioClip:
    """Decode WAV/FLAC (and mono or stereo OGG) with soundfile, anything else FFmpeg reads
    with PyAV, every channel kept with its name (:attr:`AudioClip.layout`); more than
    ``max_channels`` refused."""
    clip = _decode_soundfile(data, limits) or _decode_pyav_audio(data, limits)
    if clip.samples.shape[1] == 0:
        raise InputError("audio", "audio has no samples")
    if not np.isfinite(clip.samples).all():
        raise InputError("audio", "audio holds NaN or infinite samples")
    _check_duration("audio", clip.duration, limits)
    if clip.duration <= limits.max_seconds:
        return clip
    kept = math.floor(limits.max_seconds * clip.sample_rate)
    over = 1000 * (clip.duration - limits.max_seconds)
    cut = f"audio: its last {over:.3g} ms, past the {limits.max_seconds:g} s limit, not scored"
    return dataclasses.replace(clip, samples=clip.samples[:, :kept], warnings=(*clip.warnings, cut))


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
    padding = ENCODER_PADDING_S if field == "audio" else 0.0
    if seconds > limits.max_seconds + padding:
        shown = f"{seconds:.1f}"
        if float(shown) <= limits.max_seconds:  # 60.04 s must not read "60.0 s exceeds 60 s"
            shown = f"{seconds:.3f}"
        raise InputError(
            field, f"duration {shown} s exceeds the limit of {limits.max_seconds:g} s", status=413
        )


def _decode_soundfile(data: bytes, limits: MediaLimits) -> AudioClip | None:
    """A clip libsndfile decodes, or None: a format it cannot read, or more than two channels
    outside a RIFF WAV (PyAV then reads the file's channel layout; libsndfile keeps, say,
    Vorbis's own channel order without naming it)."""
    header = _wav_header(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            if f.channels > 2 and header is None:
                return None
            if f.samplerate <= 0:
                raise InputError("audio", "invalid sample rate")
            _check_duration("audio", f.frames / f.samplerate, limits)
            _check_channels(f.channels, limits)
            samples = np.ascontiguousarray(_read_all(f).T)
            rate = int(f.samplerate)
            declared = f.frames
    except soundfile.LibsndfileError:
        return None
    if header is None:  # a cut MP3 still declares its whole length (Xing header)
        seconds = round(samples.shape[1] / rate, 3)
        return AudioClip(samples, rate, _partial("audio", seconds, declared / rate, "seconds"))
    if header.data_size == 0:
        after = len(data) - header.data_start
        raise InputError(
            "audio",
            "the WAV header declares no samples (its data chunk size is 0)"
            + (f"; {after} bytes follow it: rewrite the header with their size" if after else ""),
        )
    # a streaming writer leaves placeholder sizes (0xFFFFFFFF) that the file never reaches
    declared = None if header.streamed else header.data_start + header.data_size
    warnings = _partial("audio", len(data), declared, "bytes")
    return AudioClip(samples, rate, warnings, _mask_layout(header.channel_mask, len(samples)))


def _read_all(f: soundfile.SoundFile) -> np.ndarray:
    """Every frame of ``f`` as float32 (frames, channels). A file libsndfile cannot seek in
    (GSM 6.10, G.721 or NMS ADPCM in a WAV) is read block by block: it refuses to read such
    a file to its end in one call."""
    if f.seekable():
        return f.read(dtype="float32", always_2d=True)
    blocks = [f.read(1 << 16, dtype="float32", always_2d=True)]
    while len(blocks[-1]):
        blocks.append(f.read(1 << 16, dtype="float32", always_2d=True))
    return np.concatenate(blocks)


@dataclass(frozen=True)
class WavHeader:
    """What a RIFF WAV's chunks declare (libsndfile reads what is there, whatever they say).

    Attributes:
        data_start: Offset of the first sample.
        data_size: The data chunk's declared size in bytes.
        streamed: The RIFF or data size is 0xFFFFFFFF: the placeholder a writer that cannot
            seek back (ffmpeg to a pipe, a recorder) leaves, not a length.
        channel_mask: The WAVE_FORMAT_EXTENSIBLE channel mask (0: none).
    """

    data_start: int
    data_size: int
    streamed: bool
    channel_mask: int


UNKNOWN_SIZE = 0xFFFFFFFF


def _wav_header(data: bytes) -> WavHeader | None:
    """The chunks of a RIFF WAV up to its data chunk, or None for another format or a WAV
    without a data chunk."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    mask = 0
    offset = 12
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = data[offset + 8 : offset + 8 + size]
        if data[offset : offset + 4] == b"fmt " and body[:2] == b"\xfe\xff" and len(body) >= 24:
            mask = int.from_bytes(body[20:24], "little")  # WAVE_FORMAT_EXTENSIBLE
        if data[offset : offset + 4] == b"data":
            streamed = UNKNOWN_SIZE in (size, int.from_bytes(data[4:8], "little"))
            return WavHeader(offset + 8, size, streamed, mask)
        offset += 8 + size + size % 2
    return None


def _mask_layout(mask: int, channels: int) -> tuple[str, ...]:
    """The channel names a WAVE_FORMAT_EXTENSIBLE mask gives, one per set bit from the lowest;
    empty (the standard order) when it names no channel or not as many as the file has."""
    names = tuple(name for bit, name in enumerate(MASK_CHANNELS) if mask >> bit & 1)
    return names if len(names) == channels and mask < 1 << len(MASK_CHANNELS) else ()


def _av_problem(err: Exception) -> str:
    """An FFmpeg error in words (``[Errno 1094995529] Invalid data found when processing
    input: '<none>'`` reads ``invalid data found when processing input``); other errors as
    they are."""
    if isinstance(err, av.FFmpegError) and err.strerror:
        return str(err.strerror[:1].lower() + err.strerror[1:])
    return str(err)


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
            names = tuple(c.name for c in stream.layout.channels)
            layout = names if len(names) == stream.channels and "NONE" not in names else ()
            rate = stream.rate
            # packed float: PyAV 18 miscounts the planes of planar audio past 7 channels (an
            # 8-channel planar frame's to_ndarray reads a 9th plane and crashes the process)
            resampler = av.AudioResampler(format="flt", rate=rate)
            channels = stream.channels
            chunks: list[np.ndarray] = []
            warnings: tuple[str, ...] = ()
            try:
                for frame in container.decode(stream):
                    chunks.extend(
                        f.to_ndarray().reshape(-1, channels).T for f in resampler.resample(frame)
                    )
                    if sum(c.shape[1] for c in chunks) > (limits.max_seconds + 1) * rate:
                        _check_duration("audio", sum(c.shape[1] for c in chunks) / rate, limits)
            except (av.FFmpegError, ValueError, OSError, IndexError) as err:
                if not chunks:
                    raise
                warnings = (f"audio: decoding stopped early ({_av_problem(err)})",)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as err:
        raise InputError("audio", f"cannot decode audio: {_av_problem(err)}") from None
    if not chunks or not rate:
        raise InputError("audio", "cannot decode audio: no audio frames")
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    seconds = round(samples.shape[1] / rate, 3)
    warnings = warnings or _partial("audio", seconds, declared, "seconds")
    return AudioClip(samples, int(rate), warnings, layout)


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a video before its frames are decoded.

    Attributes:
        fps: Average frame rate.
        num_frames: Frame count from the container, or estimated from duration x fps.
        width: Frame width in pixels.
        height: Frame height in pixels.
        warnings: What could not be decoded (a cut file).
        counted: Whether the container states the frame count (else it is estimated, and a
            cut file is told by its timestamps against ``seconds``).
        seconds: Duration the container declares, if any.
    """

    fps: float
    num_frames: int
    width: int
    height: int
    warnings: tuple[str, ...] = ()
    counted: bool = True
    seconds: float | None = None


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

    A GIF, (A)PNG or WebP is read by Pillow (:func:`_animation_frames`: FFmpeg cannot
    animate a WebP, and plays a looping animation once); every other format by FFmpeg.

    Returns:
        One tensor dict per preparer, in order, and the video's info with the frame count
        actually decoded.
    """
    try:
        webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        if data[:6] in (b"GIF87a", b"GIF89a") or data[:8] == PNG or webp:
            with Image.open(io.BytesIO(data)) as img:
                info, frames = _animation_frames(img, limits)
                return _stream(info, frames, preparers, limits)
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InputError("video", "cannot decode video: no video stream found")
            stream = _main_stream(container)
            stream.thread_type = "AUTO"
            info = _video_info(container, stream, limits)
            return _stream(info, container.decode(stream), preparers, limits)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            "video", "frames of more pixels than Pillow reads exceed the limit", 413
        ) from None
    except (av.FFmpegError, ValueError, OSError, IndexError, ZeroDivisionError) as err:
        raise InputError("video", f"cannot decode video: {_av_problem(err)}") from None


def _stream(
    info: VideoInfo,
    frames: Iterable[av.VideoFrame],
    preparers: Sequence[VideoPreparer],
    limits: MediaLimits,
) -> tuple[list[dict[str, Tensor]], VideoInfo]:
    """:func:`decode_video`'s pass over the frames: each into every preparer's sink, the
    duration limit held as they come, a decoding failure after the first a warning."""
    sinks = [p.start(info) for p in preparers]
    max_frames = math.ceil(limits.max_seconds * info.fps) + 1
    count = 0
    times = _Span()
    warnings = info.warnings  # what the frames' reader found already (a cut animation)
    try:
        for frame in frames:
            count += 1
            times.add(frame.time)
            if count > max_frames:  # past the declared rate: the timestamps decide
                seconds = times.seconds(info.fps, count)
                _check_duration("video", max(seconds, count / MAX_FPS), limits)
            for sink in sinks:
                sink.add(frame)
    except InputError:  # over the duration limit: refused, never cut
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError, ZeroDivisionError) as err:
        if count == 0:
            raise
        warnings = (f"video: decoding stopped after {count} frames ({_av_problem(err)})",)
    if count == 0:
        raise InputError("video", "cannot decode video: no frames")
    if not warnings and info.counted:
        warnings = _partial("video", count, info.num_frames, "frames")
    elif not warnings and info.seconds is not None:  # a count estimated at the declared rate
        decoded = times.seconds(info.fps, count)
        warnings = _partial("video", round(decoded, 3), info.seconds, "seconds")
    return [sink.finish() for sink in sinks], dataclasses.replace(
        info, num_frames=count, warnings=warnings
    )


# Browsers show an animation frame of 10 ms or less for 100 ms (Chromium, Firefox, Safari).
SHORTEST_FRAME_MS, SHOWN_INSTEAD_MS = 10, 100
# A looping animation is shown as long as the ad is: its passes are analysed up to this long
# (enough for the flash windows and the extended-flashing span), at least one pass, never
# past the duration limit.
LOOPED_S = 5.0
KEPT_BYTES = 512 << 20  # decoded animation frames kept for its later passes


def _animation_frames(
    img: Image.Image, limits: MediaLimits
) -> tuple[VideoInfo, Iterator[av.VideoFrame]]:
    """A GIF's, (A)PNG's or WebP's info and frames, composed by Pillow, each at the time it
    is shown (to the microsecond), deep grey scaled to 8 bits and transparency flattened
    onto white as an image's are; an APNG's default image, which is no frame of its
    animation, left out.

    A looping animation (``loop`` 0: for ever; else N plays, a GIF's N repeats after the
    first) is played pass after pass up to :data:`LOOPED_S`: a two-frame blink of 0.2 s is a
    5 Hz flash on screen, one flash in one pass. Frames of 10 ms or less last 100 ms, as in
    browsers. The duration limit is held frame by frame; a file that stops decoding after a
    frame plays what decoded, with a warning. Frames are decoded once and kept for the later
    passes, up to :data:`KEPT_BYTES` (beyond, each pass decodes them again).
    """
    _check_frame_size(img.width, img.height, limits)
    first = 1 if img.info.get("default_image") else 0
    durations: list[float] = []  # milliseconds: whole ones add up exactly (600 x 100 is 60 s)
    kept: list[np.ndarray] | None = []
    room, total = KEPT_BYTES, 0.0
    warnings: tuple[str, ...] = ()
    for index in range(first, getattr(img, "n_frames", 1)):
        try:
            img.seek(index)
            img.load()
        except (OSError, EOFError, ValueError) as err:
            if not durations:
                raise InputError("video", f"cannot decode video: {err}") from None
            warnings = (f"video: decoding stopped after {len(durations)} frames ({err})",)
            break
        shown = float(img.info.get("duration") or 0)
        durations.append(SHOWN_INSTEAD_MS if shown <= SHORTEST_FRAME_MS else shown)
        total += durations[-1]
        _check_duration("video", total / 1000, limits)
        if kept is not None:
            rgb = _animation_rgb(img)
            room -= rgb.nbytes
            if room >= 0:
                kept.append(rgb)
            else:
                kept = None
    one_pass = total / 1000
    loop = img.info.get("loop")  # None: played once
    loops = 1 if loop is None else int(loop) + (img.format == "GIF" and int(loop) > 0)
    most = math.floor(min(LOOPED_S, limits.max_seconds) / one_pass)
    passes = max(1, min(loops, most) if loops else most)
    info = VideoInfo(
        fps=len(durations) / one_pass,
        num_frames=len(durations) * passes,
        width=img.width,
        height=img.height,
        warnings=warnings,
        seconds=one_pass * passes,
    )

    def frames() -> Iterator[av.VideoFrame]:
        start = 0.0  # milliseconds
        for _ in range(passes):
            for index, duration in enumerate(durations):
                if kept is None:
                    img.seek(first + index)
                    rgb = _animation_rgb(img)
                else:
                    rgb = kept[index]
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = round(start * 1000), Fraction(1, 1_000_000)
                start += duration
                yield frame

    return info, frames()


def _animation_rgb(img: Image.Image) -> np.ndarray:
    """The current frame of an animation as an image's pixels are scored: 8-bit RGB."""
    return np.asarray(_on_white(_eight_bit(img))[0])


def _main_stream(container: Any) -> Any:
    """The video stream analysed: of those that are not a cover picture (``attached_pic``),
    the longest by its own declared duration, the first where none declares one."""
    streams = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ] or list(container.streams.video)
    return max(streams, key=lambda s: _own_seconds(s) or 0.0)


def _own_seconds(stream: Any) -> float | None:
    """A stream's duration from its own header, or from Matroska's per-track ``DURATION``
    tag (``HH:MM:SS.nnnnnnnnn``; WebM and MKV state no duration in the track header)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = MATROSKA_DURATION.fullmatch(str(stream.metadata.get("DURATION", "")))
    if tag is None:
        return None
    hours, minutes, seconds = tag.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _check_frame_size(width: int, height: int, limits: MediaLimits) -> None:
    """Refuse video frames of more pixels than ``max_pixels`` (413)."""
    if width * height > limits.max_pixels:
        raise InputError("video", f"{width}x{height} frames exceed the pixel limit", status=413)


# Demuxers of raw elementary streams: no container timing, and an average rate of 25 fps
# whatever the stream holds
RAW_STREAMS = frozenset({"h264", "hevc", "vvc", "mpegvideo", "m4v", "cavsvideo"})


def _frame_rate(container: Any, stream: Any) -> Any:
    """The container's average rate; for a raw elementary stream (H.264, HEVC, MPEG-2, ...:
    its demuxer reports 25 fps) the rate its own sequence header declares, where it does."""
    own = stream.codec_context.framerate
    if container.format.name in RAW_STREAMS and own:
        return own
    return stream.average_rate or stream.guessed_rate or stream.base_rate


def _video_info(container: Any, stream: Any, limits: MediaLimits) -> VideoInfo:
    rate = _frame_rate(container, stream)
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= MAX_FPS:
        raise InputError("video", f"cannot decode video: invalid frame rate {fps}")
    duration = _own_seconds(stream)
    if duration is None and container.duration is not None and len(container.streams) == 1:
        duration = container.duration / 1_000_000  # else the longest track's, maybe the audio
    if duration is not None:
        _check_duration("video", duration, limits)
    frames = stream.frames or (round(duration * fps) if duration else 0)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise InputError("video", "cannot decode video: no picture size")
    _check_frame_size(width, height, limits)
    return VideoInfo(
        fps=fps,
        num_frames=max(int(frames), 1),
        width=width,
        height=height,
        counted=bool(stream.frames),
        seconds=duration,
    )


class _Span:
    """The time from a video's first frame to the end of its last, from their timestamps."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.missing = False

    def add(self, time: float | None) -> None:
        if time is None:
            self.missing = True
        elif self.first is None:
            self.first = self.last = time
        else:
            self.last = max(time, self.last or time)

    def seconds(self, fps: float, frames: int) -> float:
        """Last minus first timestamp plus one frame at ``fps``; without timestamps, the
        ``frames`` decoded at ``fps``."""
        if self.missing or self.first is None or self.last is None:
            return frames / fps
        return self.last - self.first + 1 / fps


def _shown(path: Any) -> str:
    """``path`` quoted for an error message, its middle left out past :data:`SHOWN_PATH`
    characters (a base64 payload taken for a path would fill the message)."""
    text = str(path)
    if len(text) <= SHOWN_PATH:
        return repr(text)
    half = SHOWN_PATH // 2
    return f"{text[:half] + '...' + text[-half:]!r} ({len(text)} characters)"


def _confine(full: Path, path: Any, field: str, base_dir: Path) -> None:
    """Refuses ``full`` (as the ads named it: ``path``) resolving outside ``base_dir``."""
    try:
        resolved = full.resolve()
        inside = resolved.is_relative_to(base_dir.resolve())
    except (OSError, RuntimeError, ValueError) as err:
        raise InputError(field, f"cannot resolve {_shown(path)}: {err}") from None
    if not inside:
        written = Path(os.path.normpath(full.absolute()))  # full: base_dir / the path
        where = (
            f"leads through a symbolic link to {_shown(resolved)}, which is"
            if written.is_relative_to(os.path.normpath(base_dir.absolute()))
            else "is"
        )
        raise InputError(
            field,
            f"{_shown(path)} {where} outside the folder of the ads file "
            "(allow it with --allow-any-path)",
        )
