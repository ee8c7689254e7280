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
    channel_weights,
    resample,
)
from encoders.media import AudioClip, MediaLimits, decode_audio
from ensemble import samples
from ensemble.batch import pad_to_bucket
from tests.tracing import trace_save_load
from tests.wavfile import wav_bytes

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


def test_silence_reads_minus_70_with_a_warning(analyzer) -> None:
    clips = [
        AudioClip(np.zeros((2, 3 * RATE), np.float32), RATE),
        AudioClip(np.zeros((1, RATE // 4), np.float32), RATE),  # 250 ms: one block of silence
        AudioClip((1e-5 * np.sin(np.arange(2 * RATE) / 10.0))[None].astype(np.float32), RATE),
    ]
    out = measure(analyzer, clips)
    assert out[:, 0].tolist() == [-70.0, -70.0, -70.0]
    assert out[:, 1].tolist() == [-70.0, -70.0, -70.0]
    preparer = LoudnessPreparer(SETTINGS)
    for clip in clips:
        assert any(
            w.startswith("audio: silent (no 400 ms block reaches -70 LKFS")
            for w in preparer.warnings(clip)
        )
    quiet = AudioClip((1e-3 * np.sin(np.arange(2 * RATE) / 10.0))[None].astype(np.float32), RATE)
    assert preparer.warnings(quiet) == ()  # -60 dBFS: measured, not silent


def test_audio_no_block_of_which_passes_the_gate_is_said_to_be_silent(analyzer) -> None:
    """Sound only in the LFE channel (weight 0) and noise at -80 dBFS whose peaks pass -70
    dBFS both read -70 LUFS: the row says why, as it does for digital silence."""
    rng = np.random.default_rng(0)
    lfe_only = np.zeros((6, 2 * RATE), np.float32)
    lfe_only[3] = 0.5 * np.sin(2 * np.pi * 60 * np.arange(2 * RATE) / RATE)
    noise = (10 ** (-80 / 20) * rng.standard_normal((1, 2 * RATE))).astype(np.float32)
    assert np.abs(noise).max() > 10 ** (-70 / 20)
    clips = [
        AudioClip(lfe_only, RATE, layout=("FL", "FR", "FC", "LFE", "BL", "BR")),
        AudioClip(noise, RATE),
    ]
    assert [measure(analyzer, [clip])[0, 0].item() for clip in clips] == [-70.0, -70.0]
    preparer = LoudnessPreparer(SETTINGS)
    for clip in clips:
        [warning] = preparer.warnings(clip)
        assert warning.startswith("audio: silent (no 400 ms block reaches -70 LKFS")
    assert "the LFE channel not counted" in preparer.warnings(clips[0])[0]
    assert "LFE" not in preparer.warnings(clips[1])[0]  # mono: no LFE to speak of
    audible = AudioClip(lfe_only, RATE, layout=("FL", "FR", "FC", "BL", "BR", "LFE"))
    assert preparer.warnings(audible) == ()  # the same tone in the left surround is measured


@pytest.mark.parametrize(("hz", "dbfs", "silent"), [(8000, -71.5, False), (20, -60.0, True)])
def test_silence_is_the_analyzers_own_verdict_after_k_weighting(analyzer, hz, dbfs, silent):
    """K-weighting lifts an 8 kHz tone at -71.5 dBFS over the gate (it measures about -68
    LUFS: not silent) and cuts a 20 Hz tone at -60 dBFS under it (-70: silent). A test on
    the unweighted signal said the opposite of both."""
    t = np.arange(3 * RATE) / RATE
    wave = (10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * hz * t))[None].astype(np.float32)
    clip = AudioClip(wave, RATE)
    measured = float(measure(analyzer, [clip])[0, 0])
    assert (measured == -70.0) == silent
    warned = LoudnessPreparer(SETTINGS).warnings(clip)
    assert (len(warned) == 1 and warned[0].startswith("audio: silent")) == silent
    assert silent or warned == ()


def own_block(wave: np.ndarray, weights: tuple[float, ...]) -> float:
    """A clip under 400 ms as one block over its own samples: ``-0.691 + 10 log10`` of the
    weighted mean square of the K-weighted clip (float64, the standard's biquads)."""
    filtered = wave.astype(np.float64)
    for b0, b1, b2, a1, a2 in (SHELF, HIGH_PASS):
        filtered = scipy.signal.lfilter([b0, b1, b2], [1.0, a1, a2], filtered, axis=1)
    return float(-0.691 + 10 * np.log10((filtered**2).mean(1) @ np.asarray(weights)))


def test_a_clip_shorter_than_one_sample_at_48_khz_is_refused_naming_the_field() -> None:
    """Two samples at 192 kHz resample to none: refused, not read as -70 LUFS (too quiet)."""
    clip = AudioClip(np.full((1, 2), 0.5, np.float32), 192_000)
    with pytest.raises(InputError, match="too short to measure") as info:
        LoudnessPreparer(SETTINGS).prepare(clip)
    assert info.value.field == "audio"


def test_a_clip_under_one_block_is_measured_as_one_block_of_its_own_samples(analyzer) -> None:
    """A 250 ms full-scale beep (a sound logo) reads about -3 LUFS, not -70 ("too quiet");
    a 300 ms stereo one at 44.1 kHz and a 0.1 s one too; the preparer warns of each; a clip
    of one whole block is gated as before and not warned of."""
    t = np.arange(RATE) / RATE
    beep = np.sin(2 * np.pi * 997 * t)
    t44 = np.arange(44_100) / 44_100
    clips = [
        AudioClip(beep[None, : RATE // 4].astype(np.float32), RATE),
        AudioClip(np.stack([0.3 * np.sin(2 * np.pi * 440 * t44[:13_230])] * 2).astype(np.float32), 44_100),
        AudioClip((0.1 * beep[None, : RATE // 10]).astype(np.float32), RATE),
        AudioClip(beep[None, : 2 * RATE // 5].astype(np.float32), RATE),  # exactly 400 ms
    ]  # fmt: skip
    out = measure(analyzer, clips)
    at_48k = resample(clips[1].samples, 44_100)
    expected = [
        own_block(clips[0].samples, (1.0,)),
        own_block(at_48k, (1.0, 1.0)),
        own_block(clips[2].samples, (1.0,)),
        standard(clips[3].samples, (1.0,)),
    ]
    assert out[:, 0].tolist() == pytest.approx(expected, abs=0.1)
    assert out[:, 1].tolist() == pytest.approx(expected, abs=0.1)  # the one block is the loudest
    assert out[0, 0] == pytest.approx(-3.0, abs=0.1)
    assert out[:, 2].tolist() == pytest.approx([0.25, 0.3, 0.1, 0.4])
    warnings = [LoudnessPreparer(SETTINGS).warnings(c) for c in clips]
    assert warnings[0] == (
        "audio: loudness measured over the clip's 250 ms, fewer than the 400 ms of a BS.1770 "
        "gating block (one block over its own samples)",
    )
    assert [len(w) for w in warnings] == [1, 1, 1, 0]


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


# BS.1770-4's G_i for 5.1 in the standard order L R C LFE Ls Rs: written out here, not taken
# from the analyzer
FIVE_ONE = (1.0, 1.0, 1.0, 0.0, 1.41, 1.41)


def surround(content: dict[int, np.ndarray], channels: int, mask: int | None = None) -> AudioClip:
    """A real WAV file's clip (16-bit, 48 kHz, 4 s) with ``content`` in the given channels
    and silence elsewhere, decoded as an ad's audio is."""
    frames = np.zeros((4 * RATE, channels))
    for channel, wave in content.items():
        frames[:, channel] = wave
    return decode_audio(wav_bytes(frames, RATE, mask=mask), MediaLimits())


def test_five_one_follows_the_standards_channel_weights(analyzer) -> None:
    """5.1 with content in the centre only, the surrounds only, the LFE only (excluded: it
    reads as silence) and every channel, against BS.1770-4 written out in float64 with G =
    (1, 1, 1, 0, 1.41, 1.41): within 0.1 LU. Averaged to mono, the centre alone read 15.6 LU
    low."""
    speech = 0.3 * signal("speech", RATE, 4.0, 10)
    noise = 0.05 * signal("white", RATE, 4.0, 11)
    rumble = 0.5 * signal("tone_60", RATE, 4.0, 0)
    clips = [
        surround({2: speech}, 6),
        surround({4: noise, 5: 0.5 * noise}, 6),
        surround({3: rumble}, 6),
        surround({0: noise, 1: noise, 2: speech, 3: rumble, 4: 0.5 * noise, 5: 0.5 * noise}, 6),
    ]
    out = measure(analyzer, clips)
    for i in (0, 1, 3):
        assert float(out[i, 0]) == pytest.approx(standard(clips[i].samples, FIVE_ONE), abs=0.1)
    assert out[2, :2].tolist() == [-70.0, -70.0]
    centre = standard(clips[0].samples, FIVE_ONE)
    assert centre - standard(clips[0].samples.mean(0, keepdims=True), (1.0,)) > 15


def test_the_layout_comes_from_the_files_channel_mask(analyzer) -> None:
    """The same noise in channels 4 and 5: 5.1's surrounds (mask BL BR, 1.41), 5.1(side)'s
    (SL SR, 1.41) and 7.1's back pair (mask with SL SR too: rear, 1.0); no mask, 8 channels:
    the standard 7.1 order, the same back pair; a 4-channel file without a mask is quad,
    its back pair the surrounds."""
    noise = 0.1 * signal("white", RATE, 4.0, 12)
    pair = {4: noise, 5: noise}
    clips = [
        surround(pair, 6, mask=0x3F),
        surround(pair, 6, mask=0x60F),
        surround(pair, 8, mask=0x63F),
        surround(pair, 8),
        surround({2: noise, 3: noise}, 4),
    ]
    assert [c.channel_names[4:6] for c in clips[:4]] == [("BL", "BR"), ("SL", "SR")] + [
        ("BL", "BR")
    ] * 2
    assert clips[4].channel_names == ("FL", "FR", "BL", "BR")
    out = measure(analyzer, clips)[:, 0]
    front = standard(clips[0].samples[4:6], (1.0, 1.0))
    assert out.tolist() == pytest.approx(
        [front + 10 * math.log10(1.41)] * 2 + [front] * 2 + [front + 10 * math.log10(1.41)],
        abs=0.02,
    )


def test_channel_weights_by_name() -> None:
    assert channel_weights(("FC",)) == (1.0,)
    assert channel_weights(("FL", "FR", "FC", "LFE", "BL", "BR")) == FIVE_ONE
    assert channel_weights(("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")) == (
        1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.41, 1.41,
    )  # fmt: skip
    assert channel_weights(("FL", "FR", "FC", "LFE", "BC", "SL", "SR")) == (
        1.0, 1.0, 1.0, 0.0, 1.0, 1.41, 1.41,
    )  # fmt: skip
    assert channel_weights(("FL", "FR", "TFL", "TFR", "WL", "LFE2")) == (
        1.0, 1.0, 1.0, 1.0, 1.41, 0.0,
    )  # fmt: skip


def test_channels_are_padded_to_their_bucket_and_mono_stereo_stay_stereo_wide() -> None:
    """Mono and stereo fill 2 channels (the input they always had), 3 to 8 channels fill 8;
    a batch takes its widest clip's bucket; more channels than the last bucket are refused."""
    preparer = LoudnessPreparer(SETTINGS)
    widths = [
        preparer.prepare(AudioClip(np.zeros((c, RATE), np.float32), RATE))["waveform"].shape[1]
        for c in (1, 2, 3, 6, 8)
    ]
    assert widths == [2, 2, 8, 8, 8]
    assert preparer.prepare(AudioClip(np.zeros((1, RATE), np.float32), RATE))[
        "weights"
    ].tolist() == [1.0, 0.0]
    narrow = LoudnessPreparer(LoudnessSettings(max_seconds=8.0, channel_buckets=(2, 6)))
    clip = AudioClip(np.zeros((8, RATE), np.float32), RATE)
    with pytest.raises(InputError, match="8 channels: loudness analysis measures up to 6"):
        narrow.prepare(clip)
    with pytest.raises(ValueError, match="channel_buckets"):
        _ = LoudnessSettings(channel_buckets=(8, 2)).channel_widths


def test_a_multichannel_batch_traced_at_stereo_measures_what_eager_does(analyzer) -> None:
    """The trace (at its stereo example) keeps the channel dimension free: a batch of mono,
    stereo, 5.1 and 7.1 clips, padded to 8 channels (and to the traced length), measures bit
    for bit what the eager analyzer does, and each clip what it measures alone."""
    noise = 0.1 * signal("white", RATE, 4.0, 13)
    speech = 0.3 * signal("speech", RATE, 4.0, 14)
    clips = [
        AudioClip(speech[None].astype(np.float32), RATE),
        AudioClip(np.stack([speech, noise]).astype(np.float32), RATE),
        surround({2: speech, 4: noise, 5: noise}, 6),
        surround({0: noise, 2: speech, 6: noise, 7: noise}, 8, mask=0x63F),
    ]
    items = [LoudnessPreparer(SETTINGS).prepare(c) for c in clips]
    full = {"waveform": (SETTINGS.num_samples,)}  # the trace's length (the channels are free)
    inputs = [
        torch.stack(pad_to_bucket([i[k] for i in items], full.get(k, ())))
        for k in ("waveform", "weights", "length")
    ]
    assert inputs[0].shape[1:] == (SETTINGS.num_samples, 8)
    traced = trace_save_load(analyzer, analyzer.example_inputs(2))
    with torch.no_grad():
        eager = analyzer(*inputs)
        assert torch.equal(traced(*inputs), eager)
    alone = torch.cat([measure(analyzer, [c]) for c in clips])
    torch.testing.assert_close(alone, eager, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_a_full_minute_of_stereo_at_the_default_length() -> None:
    """The default input holds 60 s at 48 kHz of up to 8 channels; stereo fills the first
    channel bucket: 2 x 2.88 M samples, 23 MB per item."""
    settings = LoudnessSettings()
    analyzer = LoudnessAnalyzer(settings).eval()
    assert analyzer.input_spec[0].shape == (60 * RATE, 8)
    assert settings.channel_widths[0] == 2
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
