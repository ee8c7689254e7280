"""Audio encoder: a log-mel front end inside the module and a small CNN, length-aware."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor, nn

from encoders.base import Encoder, InputSpec
from encoders.media import AudioClip
from encoders.vision import load_weights


@dataclass(frozen=True)
class AudioSettings:
    """Settings of the log-mel CNN.

    Attributes:
        sample_rate: Rate the audio is resampled to before the encoder.
        clip_seconds: Audio is cropped or zero-padded to this length; the true length is an input.
        n_mels: Mel bands.
        n_fft: FFT size (25 ms at 16 kHz).
        hop_length: Hop between frames (10 ms at 16 kHz).
        channels: Output channels of the four conv blocks; the last is ``output_dim``.
        weights: Local weights of this module, or None.
    """

    sample_rate: int = 16_000
    clip_seconds: float = 10.0
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    channels: tuple[int, ...] = (32, 64, 128, 256)
    weights: str | None = None

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class LogMelCNN(Encoder):
    """Inputs: ``waveform`` [batch, samples] mono, ``length`` [batch] int64 (true samples).

    Output: [batch, channels[-1]], the CNN features mean-pooled over the frames that hold
    real audio (padding never dilutes a short clip).
    """

    modality = "audio"

    def __init__(self, settings: AudioSettings) -> None:
        super().__init__()
        self.hop_length = settings.hop_length
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=settings.sample_rate,
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            n_mels=settings.n_mels,
        )
        widths = (1, *settings.channels)
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in itertools.pairwise(widths)))
        self.time_stride = 2 ** len(settings.channels)
        self.output_dim = settings.channels[-1]
        self.input_spec = (
            InputSpec("waveform", (settings.num_samples,), torch.float32),
            InputSpec("length", (), torch.int64),
        )
        load_weights(self, settings.weights)

    def forward(self, waveform: Tensor, length: Tensor) -> Tensor:
        """Args: waveform [batch, samples], length [batch]. Returns [batch, output_dim]."""
        mel = torch.log(self.melspec(waveform) + 1e-6).unsqueeze(1)  # [B, 1, mels, frames]
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
    """Downmix, resample, crop or pad to ``clip_seconds``; the true length goes with it."""

    def __init__(self, settings: AudioSettings) -> None:
        self.settings = settings

    def prepare(self, media: AudioClip) -> dict[str, Tensor]:
        mono = to_mono(media, self.settings.sample_rate)
        n = self.settings.num_samples
        out = torch.zeros(n)
        length = min(n, mono.shape[0])
        out[:length] = mono[:length]
        return {"waveform": out, "length": torch.tensor(length, dtype=torch.int64)}

    def placeholder(self) -> dict[str, Tensor]:
        n = self.settings.num_samples
        return {"waveform": torch.zeros(n), "length": torch.tensor(n, dtype=torch.int64)}
