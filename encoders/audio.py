"""Audio encoder: a log-mel front end inside the module and a small CNN, length-aware.

The short-time Fourier transform of the front end runs, by default, as a strided convolution
with windowed DFT kernels: the classic reformulation for accelerators without an FFT
(``aten::stft`` is not on AWS Neuron's supported list, a convolution is), which also lets the
front end run in 16 bits. See ``AudioSettings.stft``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from encoders.base import Encoder, InputSpec, length_buckets
from encoders.media import AudioClip
from encoders.registry import register_encoder
from encoders.vision import load_weights


@dataclass(frozen=True)
class AudioSettings:
    """Settings of the log-mel CNN.

    Attributes:
        sample_rate: Rate the audio is resampled to before the encoder.
        clip_seconds: Audio is cropped to this length; the true length is an input.
        buckets: Seconds a batch is zero-padded to: the smallest that holds its longest clip
            (plus :attr:`guard_samples`); ``clip_seconds`` is always the last, ``[]`` pads
            every clip to it. Features equal those of the clip padded to ``clip_seconds``.
        n_mels: Mel bands.
        n_fft: FFT size (25 ms at 16 kHz).
        hop_length: Hop between frames (10 ms at 16 kHz).
        channels: Output channels of the four conv blocks; the last is ``output_dim``.
        weights: Local weights of this module, or None.
        stft: ``"conv"``: the STFT as a strided convolution with Hann-windowed DFT kernels and
            reflect padding built from slices (operators every Neuron compiler lists);
            ``"fft"``: ``torch.stft`` as torchaudio runs it. Same spectrogram within float
            rounding; measured on this CPU the convolution costs a few percent of the encoder,
            so it is the default. Weights and state-dict keys are the same for both.
    """

    sample_rate: int = 16_000
    clip_seconds: float = 10.0
    buckets: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0, 60.0)
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    channels: tuple[int, ...] = (32, 64, 128, 256)
    weights: str | None = None
    stft: str = "conv"

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def bucket_samples(self) -> tuple[int, ...]:
        """The buckets in samples, ending at ``num_samples``."""
        samples = [round(self.sample_rate * b) for b in self.buckets]
        return length_buckets(samples, self.num_samples, "buckets")

    @property
    def guard_samples(self) -> int:
        """Zeros kept after a clip so that padding it further changes no feature: the
        STFT window and two frames per pooling step of the CNN (its receptive field and
        pooling alignment past the last frame it averages)."""
        return self.hop_length * 2 * 2 ** len(self.channels) + self.n_fft


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def dft_kernels(n_fft: int, window: Tensor) -> Tensor:
    """Windowed real DFT kernels: cosines then negated sines, for the one-sided frequencies.

    Args:
        n_fft: FFT size.
        window: [n_fft] analysis window.

    Returns:
        [2 * (n_fft // 2 + 1), 1, n_fft], for ``conv1d`` over a [batch, 1, samples] signal.
    """
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(k, n) / n_fft
    kernels = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()
    return kernels.float().unsqueeze(1)


def reflect_pad(signal: Tensor, pad: int) -> Tensor:
    """Reflect-pad the last dimension by ``pad`` on each side with slices, ``flip`` and ``cat``.

    Args:
        signal: [batch, samples], samples > pad.

    Returns:
        [batch, samples + 2 * pad], as ``F.pad(..., mode="reflect")``.
    """
    left = signal[:, 1 : pad + 1].flip(-1)
    right = signal[:, -pad - 1 : -1].flip(-1)
    return torch.cat([left, signal, right], dim=-1)


@register_encoder("logmel_cnn", settings=AudioSettings)
class LogMelCNN(Encoder):
    """Inputs: ``waveform`` [batch, samples] mono, ``length`` [batch] int64 (true samples).

    Output: [batch, channels[-1]], the CNN features mean-pooled over the frames that hold
    real audio (padding never dilutes a short clip).
    """

    modality = "audio"
    dft: Tensor

    @classmethod
    def preparer(cls, settings: Any) -> AudioPreparer:
        return AudioPreparer(settings)

    def __init__(self, settings: AudioSettings) -> None:
        super().__init__()
        if settings.stft not in ("conv", "fft"):
            raise ValueError(f"stft must be 'conv' or 'fft', got {settings.stft!r}")
        self.hop_length = settings.hop_length
        self.n_fft = settings.n_fft
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=settings.sample_rate,
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            n_mels=settings.n_mels,
        )
        self.stft_conv = settings.stft == "conv"
        self.register_buffer(
            "dft", dft_kernels(settings.n_fft, self.melspec.spectrogram.window), persistent=False
        )
        widths = (1, *settings.channels)
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(widths)))
        self.time_stride = 2 ** len(settings.channels)
        self.output_dim = settings.channels[-1]
        self.input_spec = (
            InputSpec("waveform", (settings.num_samples,), torch.float32, settings.bucket_samples),
            InputSpec("length", (), torch.int64),
        )
        load_weights(self, settings.weights)

    def mel_power(self, waveform: Tensor) -> Tensor:
        """Args: waveform [batch, samples]. Returns mel power [batch, mels, frames]."""
        if not self.stft_conv:
            out: Tensor = self.melspec(waveform)
            return out
        padded = reflect_pad(waveform, self.n_fft // 2).unsqueeze(1)
        parts = F.conv1d(padded, self.dft, stride=self.hop_length)  # [B, 2 * freqs, frames]
        real, imag = parts.chunk(2, dim=1)
        power = real * real + imag * imag  # [B, freqs, frames]
        return torch.matmul(power.transpose(1, 2), self.melspec.mel_scale.fb).transpose(1, 2)

    def forward(self, waveform: Tensor, length: Tensor) -> Tensor:
        """Args: waveform [batch, samples], length [batch]. Returns [batch, output_dim]."""
        mel = torch.log(self.mel_power(waveform) + 1e-6).unsqueeze(1)  # [B, 1, mels, frames]
        features = self.blocks(mel).mean(dim=2)  # [B, C, frames / stride]
        frames = length.div(self.hop_length, rounding_mode="floor") + 1
        valid = (frames + self.time_stride - 1).div(self.time_stride, rounding_mode="floor")
        steps = torch.arange(features.shape[-1], device=features.device)
        mask = (steps.unsqueeze(0) < valid.clamp(min=1).unsqueeze(1)).to(features.dtype)
        return (features * mask.unsqueeze(1)).sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1.0)

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        samples = self.input_spec[0].shape[0]
        lengths = torch.randint(samples // 10, samples + 1, (batch_size,))
        return torch.randn(batch_size, samples) * 0.1, lengths


def to_mono(clip: AudioClip, sample_rate: int) -> Tensor:
    """Downmix to mono and resample (torchaudio's windowed sinc) to ``sample_rate``."""
    mono = torch.from_numpy(clip.samples).mean(dim=0)
    if clip.sample_rate != sample_rate:
        mono = torchaudio.functional.resample(mono, clip.sample_rate, sample_rate)
    return mono


class AudioPreparer:
    """Downmix, resample, crop to ``clip_seconds`` and append the guard's zeros; collation
    pads a batch to its bucket. The true length goes with it."""

    def __init__(self, settings: AudioSettings) -> None:
        self.settings = settings
        self.buckets = {"waveform": settings.bucket_samples}

    def prepare(self, media: AudioClip) -> dict[str, Tensor]:
        mono = to_mono(media, self.settings.sample_rate)
        n = self.settings.num_samples
        length = min(n, mono.shape[0])
        out = torch.zeros(min(n, length + self.settings.guard_samples))
        out[:length] = mono[:length]
        return {"waveform": out, "length": torch.tensor(length, dtype=torch.int64)}

    def placeholder(self) -> dict[str, Tensor]:
        n = min(self.settings.num_samples, self.settings.guard_samples)
        return {"waveform": torch.zeros(n), "length": torch.tensor(n, dtype=torch.int64)}
