"""WAV files written byte by byte, so a test can declare what a real writer's header says."""

from __future__ import annotations

import struct

import numpy as np

# KSDATAFORMAT_SUBTYPE_PCM, as WAVE_FORMAT_EXTENSIBLE stores it
PCM_SUBFORMAT = bytes.fromhex("0100000000001000800000aa00389b71")


def wav_bytes(
    samples: np.ndarray,
    rate: int,
    *,
    mask: int | None = None,
    data_size: int | None = None,
    riff_size: int | None = None,
) -> bytes:
    """A 16-bit PCM WAV of ``samples`` [frames, channels] in [-1, 1].

    Args:
        samples: The audio.
        rate: Sample rate.
        mask: Write WAVE_FORMAT_EXTENSIBLE with this channel mask (None: plain PCM, no layout).
        data_size: The data chunk size the header declares (None: the true size).
        riff_size: The RIFF size the header declares (None: the true size).
    """
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()
    channels = samples.shape[1]
    fmt = struct.pack(
        "<HHIIHH", 1 if mask is None else 0xFFFE, channels, rate, rate * 2 * channels,
        2 * channels, 16,
    )  # fmt: skip
    if mask is not None:
        fmt += struct.pack("<HHI", 22, 16, mask) + PCM_SUBFORMAT
    size = len(pcm) if data_size is None else data_size
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + pcm
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body
