"""The log-mel CNN on length buckets: a clip padded to its bucket gives the features of the
same clip padded to ``clip_seconds``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.audio import AudioPreparer, AudioSettings, LogMelCNN
from encoders.base import bucket_of
from encoders.media import AudioClip

SETTINGS = AudioSettings(clip_seconds=4.0, channels=(8, 16, 16, 32), buckets=(0.5, 1.0, 2.0))


@pytest.fixture(scope="module")
def encoder() -> LogMelCNN:
    torch.manual_seed(0)
    model = LogMelCNN(SETTINGS).eval()
    for module in model.modules():  # BatchNorm statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean = torch.empty_like(module.weight).uniform_(-0.5, 0.5)
            module.running_var = torch.empty_like(module.weight).uniform_(0.5, 2.0)
    return model


def clip(seconds: float, seed: int) -> AudioClip:
    rng = np.random.default_rng(seed)
    rate = 22_050
    samples = rng.uniform(-0.5, 0.5, (2, round(seconds * rate))).astype(np.float32)
    return AudioClip(samples, rate)


def test_buckets_end_at_the_clip_length() -> None:
    assert SETTINGS.bucket_samples == (8_000, 16_000, 32_000, 64_000)
    assert AudioSettings(clip_seconds=10.0).bucket_samples == (80_000, 160_000)


@pytest.mark.parametrize("seconds", [0.05, 0.3, 0.43, 0.9, 1.37, 1.65, 2.5, 3.9, 6.0])
def test_a_bucketed_clip_has_the_features_of_the_full_length_clip(
    encoder: LogMelCNN, seconds: float
) -> None:
    prepared = AudioPreparer(SETTINGS).prepare(clip(seconds, seed=round(seconds * 100)))
    waveform, length = prepared["waveform"], prepared["length"]
    bucket = bucket_of(waveform.shape[0], SETTINGS.bucket_samples)
    bucketed = torch.nn.functional.pad(waveform, (0, bucket - waveform.shape[0]))
    full = torch.nn.functional.pad(waveform, (0, SETTINGS.num_samples - waveform.shape[0]))
    with torch.no_grad():
        got = encoder(bucketed.unsqueeze(0), length.unsqueeze(0))
        want = encoder(full.unsqueeze(0), length.unsqueeze(0))
    assert bucket < SETTINGS.num_samples or seconds > 1.6  # short clips get a short bucket
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
