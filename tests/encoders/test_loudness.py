"""The BS.1770-4 loudness analyzer against pyloudnorm and FFmpeg's ebur128, on generated audio."""

from __future__ import annotations

import math

import av
import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch
from av.filter import Graph

from encoders.base import InputError
from encoders.loudness import (
    HIGH_PASS,
    RATE,
    SEGMENT,
    SHELF,
    KWeighting,
    LoudnessAnalyzer,
    LoudnessPreparer,
    LoudnessSettings,
)
from encoders.media import AudioClip
from ensemble import samples
from ensemble.batch import pad_to_bucket
from tests.tracing import trace_save_load

SETTINGS = LoudnessSettings(max_seconds=8.0)
RATES = (16_000, 22_050, 44_100, 48_000)
LEVELS = (-40.0, -30.0, -23.0, -15.0, -5.0)


@pytest.fixture(scope="module")
def analyzer() -> LoudnessAnalyzer:
    return LoudnessAnalyzer(SETTINGS).eval()


def measure(analyzer: LoudnessAnalyzer, clips: list[AudioClip], settings=SETTINGS) -> torch.Tensor:
    """[len(clips), 3]: the analyzer's measurements, the clips prepared and batched (padded to
    the bucket of the longest, as collation does)."""
    preparer = LoudnessPreparer(settings)
    items = [preparer.prepare(c) for c in clips]
    waveforms = pad_to_bucket([i["waveform"] for i in items], preparer.buckets["waveform"])
    batch = {k: torch.stack([i[k] for i in items]) for k in items[0] if k != "waveform"}
    with torch.no_grad():
        return analyzer(torch.stack(waveforms), batch["weights"], batch["length"])


def padded(item: dict[str, torch.Tensor], samples: int) -> torch.Tensor:
    """An item's waveform zero-padded to ``samples``."""
    return torch.constant_pad_nd(item["waveform"], [0, 0, 0, samples - len(item["waveform"])])


def reference(clip: AudioClip) -> float:
    """pyloudnorm at the clip's own rate (mono passed as one channel)."""
    data = clip.samples.T.astype(np.float64)
    return float(pyloudnorm.Meter(clip.sample_rate).integrated_loudness(data))


def ebur128(clip: AudioClip) -> float:
    """FFmpeg's ebur128 filter (through PyAV): integrated loudness after the whole clip."""
    channels = clip.samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    graph = Graph()
    source = graph.add_abuffer(
        format="fltp", sample_rate=clip.sample_rate, layout=layout, channels=channels
    )
    meter = graph.add("ebur128", "metadata=1")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    step = clip.sample_rate // 10
    last = None
    for start in range(0, clip.samples.shape[1], step):
        part = np.ascontiguousarray(clip.samples[:, start : start + step])
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        frame.sample_rate = clip.sample_rate
        frame.pts = start
        graph.push(frame)
        while True:
            try:
                last = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
    assert last is not None
    return float(last.metadata["lavfi.r128.I"])


def signal(kind: str, rate: int, seconds: float, seed: int) -> np.ndarray:
    """[frames] float64: a test signal at an arbitrary level."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    if kind == "tone_997":
        return np.sin(2 * np.pi * 997 * t)
    if kind == "tone_60":
        return np.sin(2 * np.pi * 60 * t)
    if kind == "tone_5k":
        return np.sin(2 * np.pi * 5000 * t)
    if kind == "white":
        return rng.standard_normal(t.shape)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(t.shape))
        spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(t.size, 1 / rate), 20.0))
        return np.fft.irfft(spectrum, t.size)
    if kind == "speech":
        return samples.speech_like(seconds, rate=rate, seed=seed)[:, 0].astype(np.float64)
    if kind == "speech_gaps":  # speech, 3 s of silence, speech
        half = samples.speech_like(seconds / 3, rate=rate, seed=seed)[:, 0]
        return np.concatenate([half, np.zeros(half.size), half]).astype(np.float64)
    raise ValueError(kind)


KINDS = ("tone_997", "tone_60", "tone_5k", "white", "pink", "speech", "speech_gaps")


def clip_at(kind: str, rate: int, level: float, stereo: bool, seed: int) -> AudioClip:
    """A clip scaled so that pyloudnorm reads ``level`` LUFS; stereo: right = 0.6 x left."""
    mono = signal(kind, rate, 7.0, seed)
    channels = np.stack([mono, 0.6 * mono]) if stereo else mono[None]
    clip = AudioClip(channels.astype(np.float32), rate)
    gain = 10 ** ((level - reference(clip)) / 20)
    return AudioClip((channels * gain).astype(np.float32), rate)


CASES = [
    (kind, rate, LEVELS[(i + j) % len(LEVELS)], (i + j) % 2 == 1)
    for i, kind in enumerate(KINDS)
    for j, rate in enumerate(RATES)
]


def test_within_half_an_lu_of_pyloudnorm(analyzer) -> None:
    """Tones, noise and speech with gaps, -40 to -5 LUFS, 16 to 48 kHz, mono and stereo."""
    clips = [clip_at(k, r, level, stereo, seed) for seed, (k, r, level, stereo) in enumerate(CASES)]
    ours = torch.cat([measure(analyzer, clips[i : i + 7]) for i in range(0, len(clips), 7)])
    expected = torch.tensor([reference(c) for c in clips])
    errors = (ours[:, 0] - expected).abs()
    worst = int(errors.argmax())
    assert errors.max() < 0.5, (
        f"{CASES[worst]}: {float(ours[worst, 0]):.2f} vs {expected[worst]:.2f}"
    )
    assert errors.max() < 0.15  # what the FFT resampling achieves; the target is 0.5
    levels = torch.tensor([level for _, _, level, _ in CASES])
    assert (expected - levels).abs().max() < 0.01  # the clips really span -40 to -5 LUFS


def standard(wave: np.ndarray, weights: tuple[float, ...]) -> float:
    """BS.1770-4 written out in float64 at 48 kHz: the standard's biquads (scipy's lfilter),
    complete 400 ms blocks every 100 ms, the absolute and relative gates."""
    filtered = wave.astype(np.float64)
    for b0, b1, b2, a1, a2 in (SHELF, HIGH_PASS):
        filtered = scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], filtered, axis=1)
    blocks = (filtered.shape[1] - 19_200) // 4_800 + 1
    z = np.stack([(filtered[:, j * 4800 : j * 4800 + 19_200] ** 2).mean(1) for j in range(blocks)])
    power = z @ np.asarray(weights)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(power)
    gated = loudness >= -70
    relative = -0.691 + 10 * np.log10(power[gated].mean()) - 10
    return float(-0.691 + 10 * np.log10(power[gated & (loudness > relative)].mean()))


def test_matches_the_standard_written_out(analyzer) -> None:
    """The chunked, scanned IIR and the masked gating equal the plain float64 computation."""
    clips = [
        AudioClip(
            (
                0.05
                * np.stack([signal("speech_gaps", RATE, 7.0, 9), signal("white", RATE, 7.0, 9)])
            ).astype(np.float32),
            RATE,
        ),
        AudioClip((0.3 * signal("tone_60", RATE, 5.3, 0))[None].astype(np.float32), RATE),
    ]
    out = measure(analyzer, clips)[:, 0]
    assert float(out[0]) == pytest.approx(standard(clips[0].samples, (1.0, 1.0)), abs=0.01)
    assert float(out[1]) == pytest.approx(standard(clips[1].samples, (1.0,)), abs=0.01)


def test_the_chunked_cascade_is_the_two_biquads_one_after_the_other() -> None:
    """The one-matmul-per-chunk K-weighting against the standard's biquads run one after the
    other in float64 (scipy's lfilter), over 10 s of speech, noise and a 60 Hz tone: within
    0.2 % of the peak (about 0.02 dB) across 7,500 chunks of float32 state scanning, where the
    high-pass's poles near 1 amplify rounding (measured 0.15 %; two chunked biquads one after
    the other, the previous filter, were 7 % off on white noise)."""
    k_weighting = KWeighting(64, 7_500)
    wave = np.stack(
        [
            0.3 * signal(kind, RATE, 10.0, seed)
            for seed, kind in enumerate(("speech", "white", "tone_60"))
        ]
    )
    expected = wave.astype(np.float64)
    for b0, b1, b2, a1, a2 in (SHELF, HIGH_PASS):
        expected = scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], expected, axis=1)
    with torch.no_grad():
        ours = k_weighting(torch.from_numpy(wave).float()).double().numpy()
    assert np.abs(ours - expected).max() < 2e-3 * np.abs(expected).max()


def test_agrees_with_ffmpeg_ebur128(analyzer) -> None:
    clips = [
        clip_at("speech_gaps", 44_100, -24.0, True, 1),
        clip_at("pink", 48_000, -12.0, False, 2),
        clip_at("tone_997", 22_050, -33.0, True, 3),
    ]
    ours = measure(analyzer, clips)[:, 0]
    for value, clip in zip(ours.tolist(), clips, strict=True):
        assert value == pytest.approx(ebur128(clip), abs=0.5)


def test_997_hz_sine_reads_as_the_standard_says(analyzer) -> None:
    """BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; at -20 dB, -23.01."""
    t = np.arange(5 * RATE) / RATE
    clip = AudioClip((0.1 * np.sin(2 * np.pi * 997 * t))[None].astype(np.float32), RATE)
    assert float(measure(analyzer, [clip])[0, 0]) == pytest.approx(-23.01, abs=0.02)


def test_mono_is_counted_once_and_stereo_twice(analyzer) -> None:
    mono = clip_at("speech", 44_100, -20.0, False, 4)
    stereo = AudioClip(np.repeat(mono.samples, 2, axis=0), mono.sample_rate)
    out = measure(analyzer, [mono, stereo])[:, 0]
    assert float(out[0]) == pytest.approx(-20.0, abs=0.15)
    assert float(out[1] - out[0]) == pytest.approx(10 * math.log10(2), abs=0.01)


def test_silence_gaps_are_gated_out(analyzer) -> None:
    """The gates drop silent blocks: a gap as long as the speech costs well under 0.5 LU
    (blocks straddling its edges still count), where an ungated mean would lose 3 dB."""
    speech = signal("speech", 48_000, 2.5, 5)
    with_gap = np.concatenate([speech, np.zeros(speech.size), speech])
    clips = [
        AudioClip((0.1 * np.concatenate([speech, speech]))[None].astype(np.float32), 48_000),
        AudioClip((0.1 * with_gap)[None].astype(np.float32), 48_000),
    ]
    out = measure(analyzer, clips)[:, 0]
    assert 0 < float(out[0] - out[1]) < 0.5
    assert float(out[1]) == pytest.approx(reference(clips[1]), abs=0.15)


def test_silence_and_clips_under_one_block_read_minus_70(analyzer) -> None:
    clips = [
        AudioClip(np.zeros((2, 3 * RATE), np.float32), RATE),
        AudioClip((0.5 * np.ones((1, RATE // 4))).astype(np.float32), RATE),  # 250 ms
        AudioClip((1e-5 * np.sin(np.arange(2 * RATE) / 10.0))[None].astype(np.float32), RATE),
    ]
    out = measure(analyzer, clips)
    assert out[:, 0].tolist() == [-70.0, -70.0, -70.0]
    assert out[:, 1].tolist() == [-70.0, -70.0, -70.0]
    assert out[1, 2] == pytest.approx(0.25)


def test_samples_after_the_length_are_ignored(analyzer) -> None:
    preparer = LoudnessPreparer(SETTINGS)
    item = preparer.prepare(clip_at("white", 48_000, -20.0, True, 6))
    noisy = dict(item)
    noisy["waveform"] = padded(item, SETTINGS.num_samples)  # the unpadded item against...
    noisy["waveform"][int(item["length"]) :] = 0.9  # ...the longest input, noise after the end
    with torch.no_grad():
        clean, loud = (analyzer(*(t.unsqueeze(0) for t in it.values())) for it in (item, noisy))
    torch.testing.assert_close(clean, loud)


def test_longer_audio_is_cut_at_max_seconds(analyzer) -> None:
    clip = AudioClip((0.1 * signal("white", 16_000, 9.5, 7))[None].astype(np.float32), 16_000)
    out = measure(analyzer, [clip])
    assert float(out[0, 2]) == pytest.approx(SETTINGS.max_seconds)
    cut = AudioClip(clip.samples[:, : 8 * 16_000], 16_000)
    assert float(out[0, 0]) == pytest.approx(reference(cut), abs=0.15)


def test_more_than_two_channels_are_refused() -> None:
    clip = AudioClip(np.zeros((6, RATE), np.float32), RATE)
    with pytest.raises(InputError, match="6 channels"):
        LoudnessPreparer(SETTINGS).prepare(clip)


@pytest.mark.slow
def test_a_full_minute_of_stereo_at_the_default_length() -> None:
    """The default input holds 60 s of stereo at 48 kHz: 2 x 2.88 M samples, 23 MB per item."""
    settings = LoudnessSettings()
    analyzer = LoudnessAnalyzer(settings).eval()
    assert analyzer.input_spec[0].shape == (60 * RATE, 2)
    speech = signal("speech", 44_100, 59.5, 8)
    clip = AudioClip((0.2 * np.stack([speech, 0.8 * speech])).astype(np.float32), 44_100)
    out = measure(analyzer, [clip], settings)
    assert float(out[0, 0]) == pytest.approx(reference(clip), abs=0.15)
    assert float(out[0, 2]) == pytest.approx(59.5, abs=1e-3)


def test_per_second_loudness_follows_the_level_of_each_second(analyzer) -> None:
    """997 Hz at -20 dB, then -10 dB, then silence, 2.5 s in all: each second reads as a steady
    sine of its level would (-23.01, -13.01 LUFS; the filter's edge adds little), the silent
    half second near silence, and the seconds past the clip -70."""
    t = np.arange(RATE) / RATE
    sine = np.sin(2 * np.pi * 997 * t)
    wave = np.concatenate([0.1 * sine, np.sqrt(0.1) * sine, np.zeros(RATE // 2)])
    item = LoudnessPreparer(SETTINGS).prepare(AudioClip(wave[None].astype(np.float32), RATE))
    item["waveform"] = padded(item, SETTINGS.num_samples)
    with torch.no_grad():
        per_second = analyzer.per_second(*(item[k].unsqueeze(0) for k in item))[0]
    assert per_second.shape == (8,)
    assert per_second[:2].tolist() == pytest.approx([-23.01, -13.01], abs=0.1)
    assert float(per_second[2]) < -50  # the K-weighting filter rings a little past the sine
    assert per_second[3:].tolist() == [-70.0] * 5


def test_filtering_span_by_span_measures_the_same_bit_for_bit() -> None:
    """Fixed spans of 1 and 7 segments (the last one short), and clips in groups of rows
    with spans sized by the group, against the whole input at once, eager and traced at
    another batch size: the spans' loop is unrolled over the fixed length, and tracing keeps
    the fixed spans and the whole batch."""
    torch.manual_seed(0)

    def analyzer(time_chunk: int, working_set: int) -> LoudnessAnalyzer:
        settings = LoudnessSettings(max_seconds=3.0, time_chunk=time_chunk, working_set=working_set)
        return LoudnessAnalyzer(settings).eval()

    whole = analyzer(time_chunk=0, working_set=0)
    waveform, weights, length = whole.example_inputs(3)
    waveform[1] *= 1e-3  # quiet enough for the relative gate to matter
    rows = 2 * len(waveform)
    with torch.no_grad():
        expected = whole(waveform, weights, length)
        for time_chunk in (1, 7):
            spans = analyzer(time_chunk=time_chunk, working_set=0)
            assert torch.equal(spans(waveform, weights, length), expected), time_chunk
        samples = waveform.shape[1]
        # clips (2 channels) one at a time in spans of 1 segment, then of 7; two clips then
        # one, each group in one span; the whole batch in one span
        groups = ((1, 2), (14 * SEGMENT, 2), (4 * samples, 4), (1 << 30, rows))
        for working_set, group in groups:
            sized = analyzer(time_chunk=0, working_set=working_set)
            span = min(30, max(1, working_set // (group * SEGMENT)))
            assert sized._spans(group, samples)[0][1] == span * SEGMENT
            assert torch.equal(sized(waveform, weights, length), expected), working_set
        traced = trace_save_load(spans, spans.example_inputs(2))
        assert torch.equal(traced(waveform, weights, length), expected)
        # traced, the spans are the fixed ones whatever the working set: 5 of 7 segments
        sized = analyzer(time_chunk=7, working_set=1 << 30)
        graph = str(trace_save_load(sized, sized.example_inputs(2)).inlined_graph)
        assert graph.count("aten::matmul") == str(traced.inlined_graph).count("aten::matmul")
        assert str(trace_save_load(whole, whole.example_inputs(2)).inlined_graph).count(
            "aten::matmul"
        ) < graph.count("aten::matmul")


def test_a_batch_padded_to_its_bucket_measures_what_the_longest_input_does() -> None:
    """Clips of 0.3 to 9 s (cut at 8 s) in buckets of 1, 2, 5 and 8 s: bit for bit what the
    clips padded to the full 8 s give, per batch and per clip."""
    bucketed = LoudnessSettings(max_seconds=8.0, buckets=(1.0, 2.0, 5.0))
    assert bucketed.bucket_samples == (RATE, 2 * RATE, 5 * RATE, 8 * RATE)
    analyzer = LoudnessAnalyzer(bucketed).eval()
    whole = LoudnessSettings(max_seconds=8.0, buckets=())
    clips = [
        clip_at(kind, rate, level, stereo, seed)
        for seed, (kind, rate, level, stereo) in enumerate(
            [("speech", 16_000, -23.0, False), ("white", 44_100, -15.0, True),
             ("speech_gaps", 48_000, -30.0, True)]
        )
    ]  # fmt: skip
    short = [AudioClip(c.samples[:, : int(c.sample_rate * s)], c.sample_rate)
             for c, s in zip(clips, (0.3, 1.7, 4.2), strict=True)]  # fmt: skip
    for batch in ([short[0]], short[:2], short, [*short, *clips]):
        expected = measure(analyzer, batch, whole)
        assert torch.equal(measure(analyzer, batch, bucketed), expected)
        for i, clip in enumerate(batch):
            assert torch.equal(measure(analyzer, [clip], bucketed)[0], expected[i])
