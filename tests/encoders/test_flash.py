"""The WCAG 2.3.1 flash analyzer: EA IRIS's verdicts on its videos, and clips made here."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image

from encoders.flash import (
    FlashAnalyzer,
    FlashPreparer,
    FlashSettings,
    frame_slots,
    on_timeline,
    srgb_to_linear,
)
from encoders.media import MediaLimits, VideoInfo, decode_video
from ensemble import samples
from ensemble.batch import pad_to_bucket
from tests.tracing import trace_save_load

VERDICTS = Path(__file__).with_name("iris_verdicts.csv")
NAMES = FlashAnalyzer.measurement_names
FLASHES, RED = NAMES.index("max_flashes"), NAMES.index("max_red_flashes")
AREA, WORST = NAMES.index("flash_area"), NAMES.index("worst_window_s")
EXTENDED, SECONDS = NAMES.index("extended_s"), NAMES.index("seconds")
LIMIT = 3.0  # WCAG 2.3.1: more than three flashes in any one second fails

W, H = 64, 36  # generated clips: 16 x 16 cells of 4 x 2.25 pixels
SMALL = FlashSettings(max_seconds=4.0)
LUT = srgb_to_linear()
Frame = np.ndarray


def read_verdicts() -> list[dict[str, str]]:
    lines = [line for line in VERDICTS.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


ROWS = read_verdicts()


# IRIS's own videos (read from ../shared, never copied into the project)


@pytest.fixture(scope="module")
def iris(shared_dir: Path) -> dict[str, Any]:
    """Per video: the analyzer's measurements and the prepared grid, all in one batch."""
    folder = shared_dir / "reference" / "iris"
    settings = FlashSettings()
    preparer = FlashPreparer(settings)
    prepared = {}
    for row in ROWS:
        (item,), _ = decode_video((folder / row["video"]).read_bytes(), [preparer], MediaLimits())
        prepared[row["video"]] = item
    batch = batched(list(prepared.values()), settings)
    with torch.no_grad():
        out = FlashAnalyzer(settings).eval()(*batch)
    return {
        "folder": folder,
        "prepared": prepared,
        "out": dict(zip(prepared, out, strict=True)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[r["video"] for r in ROWS])
def test_agrees_with_iris_verdicts(iris, row) -> None:
    out = iris["out"][row["video"]]
    assert iris["prepared"][row["video"]]["frames"] == int(row["frames"])
    assert bool(out[FLASHES] > LIMIT) == (row["luminance_flash_fail"] == "1")
    assert bool(out[RED] > LIMIT) == (row["red_flash_fail"] == "1")
    # Not only the verdict: the most transitions in any second, as IRIS counts them.
    assert float(out[FLASHES]) == int(row["max_luminance_transitions"]) / 2
    assert float(out[RED]) == int(row["max_red_transitions"]) / 2
    assert bool(out[EXTENDED] >= 4.0) == (row["extended_fail"] == "1")
    if row["max_extended_frames"]:
        expected = int(row["max_extended_frames"]) / float(row["fps"])
        assert float(out[EXTENDED]) == pytest.approx(expected, abs=1e-4)
    assert float(out[SECONDS]) == pytest.approx(int(row["frames"]) / float(row["fps"]))


LOGGED = [r for r in ROWS if r["video"] != "flashStripes.mp4"]  # its log has no frame values


@pytest.mark.slow
@pytest.mark.parametrize("row", LOGGED, ids=[r["video"] for r in LOGGED])
def test_frame_luminance_and_red_match_iris_logs(iris, row) -> None:
    """Per frame, the mean over cells is IRIS's frame-average relative luminance and red."""
    log = iris["folder"] / "expected_frame_logs" / row["video"].replace(".mp4", "_RELATIVE.csv")
    entries = list(csv.DictReader(log.read_text().splitlines()))
    item = iris["prepared"][row["video"]]
    frames = int(item["frames"])
    means = item["grid"][:frames].double().mean((2, 3))  # [frames, 2]
    luminance = torch.tensor([float(e["AverageLuminance"]) for e in entries], dtype=torch.double)
    red = torch.tensor([float(e["AverageRed"]) for e in entries], dtype=torch.double)
    assert len(entries) == frames
    torch.testing.assert_close(means[:, 0], luminance, atol=1e-4, rtol=0)
    torch.testing.assert_close(means[:, 1], red, atol=1e-2, rtol=0)


# Clips generated here, prepared by the real preparation (without a codec) and batched


@pytest.fixture(scope="module")
def analyzer() -> FlashAnalyzer:
    return FlashAnalyzer(SMALL).eval()


def prepare(frames: Sequence[Frame], fps: float, settings: FlashSettings = SMALL) -> dict:
    sink = FlashPreparer(settings).start(VideoInfo(fps, len(frames), W, H))
    for frame in frames:
        sink.add(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
    return sink.finish()


def batched(items: Sequence[dict], settings: FlashSettings = SMALL) -> list[torch.Tensor]:
    """The analyzer's inputs for ``items``, grids padded to their bucket as collation does."""
    grids = pad_to_bucket([i["grid"] for i in items], settings.bucket_frames)
    return [torch.stack(grids), *(torch.stack([i[k] for i in items]) for k in ("frames", "fps"))]


def run(analyzer: FlashAnalyzer, items: Sequence[dict], settings=SMALL) -> torch.Tensor:
    with torch.no_grad():
        return analyzer(*batched(items, settings))


def analyse(analyzer: FlashAnalyzer, clips: Sequence[tuple[Sequence[Frame], float]]):
    return run(analyzer, [prepare(frames, fps) for frames, fps in clips])


def code_for(luminance: float) -> int:
    """The 8-bit grey whose relative luminance is nearest ``luminance``."""
    return int(np.abs(LUT - luminance).argmin())


def solid(rgb: Sequence[int] | int) -> Frame:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (H, W, 3)).copy()


def square_wave(hz: float, fps: float, seconds: float) -> np.ndarray:
    """[frames] bool: on/off state of a flicker at ``hz`` sampled at ``fps``."""
    return (np.floor(np.arange(round(seconds * fps)) * 2 * hz / fps) % 2).astype(bool)


def flicker(
    on: np.ndarray, bright: Frame, dark: Frame, where: Callable[[Frame], Frame] | None = None
) -> list[Frame]:
    """Frames showing ``bright`` / ``dark`` by ``on``; ``where`` masks the flickering part."""
    frames = []
    for state in on:
        frame = bright if state else dark
        frames.append(frame if where is None else where(frame))
    return frames


def max_toggles(on: np.ndarray, fps: float) -> int:
    """Most state changes in any window of round(fps) frames: the expected transitions."""
    toggles = np.concatenate([[0], on[1:] != on[:-1]]).astype(int)
    window = round(fps)
    return max(int(toggles[max(0, t - window + 1) : t + 1].sum()) for t in range(len(on)))


BLACK, WHITE, GREY = solid(0), solid(255), solid(128)
CASES = [(fps, hz) for fps in (25, 30, 60) for hz in (1, 2, 3, 4, 5, 10, 15, 20)]


def test_square_wave_flicker_1_to_20_hz(analyzer) -> None:
    waves = [square_wave(hz, fps, 4.0) for fps, hz in CASES]
    out = analyse(
        analyzer,
        [(flicker(on, WHITE, BLACK), fps) for on, (fps, _) in zip(waves, CASES, strict=True)],
    )
    for (fps, hz), on, row in zip(CASES, waves, out, strict=True):
        assert float(row[FLASHES]) == max_toggles(on, fps) / 2, (fps, hz)
        assert float(row[RED]) == 0
        if hz <= 2:
            assert row[FLASHES] <= LIMIT, (fps, hz)
        if hz >= 4:
            assert row[FLASHES] > LIMIT, (fps, hz)
            assert float(row[AREA]) == 1.0


def left(fraction: float) -> Callable[[Frame], Frame]:
    """Shows a frame on the left ``fraction`` of the columns, mid grey elsewhere."""

    def mask(frame: Frame) -> Frame:
        out = GREY.copy()
        cols = round(W * fraction)
        out[:, :cols] = frame[:, :cols]
        return out

    return mask


def centre(fraction: float) -> Callable[[Frame], Frame]:
    """Shows a frame in a centred rectangle of ``fraction`` of the area, mid grey elsewhere."""

    def mask(frame: Frame) -> Frame:
        out = GREY.copy()
        h, w = round(H * fraction**0.5), round(W * fraction**0.5)
        top, side = (H - h) // 2, (W - w) // 2
        out[top : top + h, side : side + w] = frame[top : top + h, side : side + w]
        return out

    return mask


@pytest.mark.parametrize(
    ("where", "fails"),
    [
        (left(0.10), False),
        (left(0.15), False),
        (left(0.30), True),
        (left(0.45), True),
        (left(0.60), True),
        (centre(0.10), False),
        (centre(0.40), True),
    ],
    ids=["left10", "left15", "left30", "left45", "left60", "centre10", "centre40"],
)
def test_flashing_patches_count_from_a_quarter_of_the_frame(analyzer, where, fails) -> None:
    on = square_wave(8, 30, 3.0)
    (row,) = analyse(analyzer, [(flicker(on, WHITE, BLACK, where), 30)])
    assert bool(row[FLASHES] > LIMIT) == fails
    patch = (where(WHITE)[..., 0] == 255).mean()
    assert float(row[AREA]) == pytest.approx(patch, abs=0.01)


def patch_clip(
    size: tuple[int, int],
    area: float,
    corner: tuple[float, float],
    levels: tuple[int, int] = (0, 255),
) -> tuple[list[Frame], float]:
    """A patch of ``area`` of the frame (the frame's aspect) flickering at 8 Hz between two
    grey ``levels`` on mid grey, its top-left corner at ``corner`` (fractions of the space
    left)."""
    width, height = size
    w, h = round(width * area**0.5), round(height * area**0.5)
    left, top = round(corner[0] * (width - w)), round(corner[1] * (height - h))
    frames = []
    for on in square_wave(8, 30, 2.0):
        frame = np.full((height, width, 3), 128, np.uint8)
        frame[top : top + h, left : left + w] = levels[int(on)]
        frames.append(frame)
    return frames, w * h / (width * height)


PLACES = {
    "top-left": (0, 0),
    "bottom-right": (1, 1),
    "centre": (0.5, 0.5),
    "off-grid": (0.37, 0.71),
}


TWO_SECONDS = FlashSettings(max_seconds=2.0)


@pytest.mark.parametrize("place", PLACES)
def test_flashing_area_within_a_point_of_the_patch(place) -> None:
    """Patches of 5-60 % at corners, centre and offsets off the 16 x 16 grid (cells of 10 x
    5.6 pixels), black / white and a change of 0.15 (a cell a third covered changes by 0.05):
    the area is the patch's within 1 point, and the 25 % rule follows it."""
    clips = [
        patch_clip((160, 90), area, PLACES[place], levels)
        for area in (0.05, 0.1, 0.2, 0.24, 0.26, 0.4, 0.6)
        for levels in ((0, 255), (code_for(0.40), code_for(0.55)))
    ]
    items = [prepare(frames, 30, TWO_SECONDS) for frames, _ in clips]
    out = run(FlashAnalyzer(TWO_SECONDS).eval(), items)
    for (_, patch), row in zip(clips, out, strict=True):
        assert float(row[AREA]) == pytest.approx(patch, abs=0.01), patch
        assert bool(row[FLASHES] > LIMIT) == (patch >= 0.25), patch


def test_a_centred_fifth_of_a_640x360_frame_measures_a_fifth() -> None:
    """The case of issue 15: counting partly covered cells whole, it measured 25 % (a false
    failure)."""
    frames, patch = patch_clip((640, 360), 0.2, (0.5, 0.5))
    (row,) = run(FlashAnalyzer(TWO_SECONDS).eval(), [prepare(frames[:45], 30, TWO_SECONDS)])
    assert float(row[AREA]) == pytest.approx(patch, abs=0.01)
    assert row[FLASHES] <= LIMIT


def test_red_flashes_are_counted_apart_from_luminance(analyzer) -> None:
    grey = solid(code_for(0.2126))  # the relative luminance of saturated red: no general flash
    pink = solid((255, 180, 180))  # R / (R + G + B) = 0.52 in linear light: not saturated red
    pink_luminance = float(LUT[255] * 0.2126 + LUT[180] * (0.7152 + 0.0722))
    clips = [
        (flicker(square_wave(5, 30, 3.0), solid((255, 0, 0)), grey), 30),
        (flicker(square_wave(2, 30, 3.0), solid((255, 0, 0)), grey), 30),
        (flicker(square_wave(5, 30, 3.0), solid((100, 0, 0)), BLACK), 30),  # dim but saturated
        (flicker(square_wave(5, 30, 3.0), pink, solid(code_for(pink_luminance))), 30),
    ]
    out = analyse(analyzer, clips)
    assert out[:, FLASHES].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert out[:, RED].tolist() == [5.0, 2.0, 5.0, 0.0]


@pytest.mark.parametrize(
    ("low", "high", "fails"),
    [
        (0.40, 0.45, False),  # a change under 0.1 is no transition
        (0.40, 0.55, True),
        (0.85, 1.00, False),  # both states bright: the darker one must be below 0.8
        (0.70, 1.00, True),
    ],
)
def test_contrast_and_brightness_thresholds(analyzer, low, high, fails) -> None:
    frames = flicker(square_wave(8, 30, 3.0), solid(code_for(high)), solid(code_for(low)))
    (row,) = analyse(analyzer, [(frames, 30)])
    assert bool(row[FLASHES] > LIMIT) == fails


def test_scene_cuts(analyzer) -> None:
    bright = np.asarray(samples.banner(W, H, seed=1))
    dark = (bright * 0.3).astype(np.uint8)
    every_2s = np.floor(np.arange(120) / 60) % 2 == 1
    every_100ms = np.floor(np.arange(120) / 3) % 2 == 1
    out = analyse(
        analyzer, [(flicker(every_2s, bright, dark), 30), (flicker(every_100ms, bright, dark), 30)]
    )
    assert out[0, FLASHES] <= 0.5
    assert out[1, FLASHES] > LIMIT


def grey_ramp(levels: Iterable[float]) -> list[Frame]:
    return [solid(code_for(level)) for level in levels]


def test_slow_fades_pass_and_held_frames_do_not_break_a_transition(analyzer) -> None:
    triangle = np.abs((np.arange(120) / 45) % 2 - 1)  # black <-> white every 1.5 s
    # 0.12 in steps of 0.04 with every step held a frame: no step reaches 0.1 on its own,
    # and held (unchanged) frames continue a run as in IRIS, so each ramp is one transition.
    up = [0.30, 0.34, 0.34, 0.38, 0.38, 0.42]
    held = up + up[::-1]  # 12 frames: 5 Hz at 60 fps
    out = analyse(analyzer, [(grey_ramp(triangle), 30), (grey_ramp(held * 20), 60)])
    assert out[0, FLASHES] <= 1.0
    assert float(out[1, FLASHES]) == 5.0


def test_a_smooth_flicker_counts_its_falls_from_white(analyzer) -> None:
    """A 5 Hz sine between black and white at 60 fps: ten transitions a second (IRIS's rule
    would count only the rises: its falls reach 0.1 of change while still above 0.8)."""
    sine = 0.5 - 0.5 * np.cos(2 * np.pi * 5 * np.arange(180) / 60)
    (row,) = analyse(analyzer, [(grey_ramp(sine), 60)])
    assert float(row[FLASHES]) == 5.0


def test_halves_flashing_in_opposite_phase_are_two_flashing_areas(analyzer) -> None:
    def halves(on: bool) -> Frame:
        frame = BLACK.copy()
        frame[:, : W // 2] = 255 if on else 0
        frame[:, W // 2 :] = 0 if on else 255
        return frame

    frames = [halves(s) for s in square_wave(5, 30, 3.0)]
    item = prepare(frames, 30)
    frame_mean = item["grid"][: int(item["frames"]), 0].mean((1, 2))
    assert float(frame_mean.max() - frame_mean.min()) < 0.01  # a frame average sees nothing
    (row,) = run(analyzer, [item])
    assert float(row[FLASHES]) == 5.0
    assert float(row[AREA]) == 1.0


def blinking_dots(dots: np.ndarray, on: tuple[float, float], off: tuple[float, float]) -> list:
    """2 s at 30 fps of a 10 Hz square wave: grey frames whose ``dots`` [H, W] are at the
    relative luminance ``on[0]`` and the rest at ``on[1]`` while on, ``off`` while off."""
    levels = [np.where(dots, *(code_for(level) for level in state)) for state in (off, on)]
    grey = [np.repeat(level[..., None], 3, axis=2).astype(np.uint8) for level in levels]
    return [grey[int(state)] for state in square_wave(10, 30, 2.0)]


def test_a_faint_shimmer_beside_a_flash_neither_hides_it_nor_adds_to_its_area(analyzer) -> None:
    """Scattered pixels over 28 % of the frame flash at 10 Hz (relative luminance 0.10 to
    0.35) while the rest shimmers in phase by 0.012, far under the 0.1 threshold. Counted as
    taking part in each cell's change, the shimmer diluted the change to 0.09: no flash."""
    dots = np.random.default_rng(0).random((H, W)) < 0.28
    (row,) = analyse(analyzer, [(blinking_dots(dots, (0.35, 0.512), (0.10, 0.5)), 30)])
    assert float(row[FLASHES]) == 10.0
    assert float(row[AREA]) == pytest.approx(dots.mean(), abs=0.01)


def test_dots_blinking_on_a_white_page_flash_though_their_cells_stay_bright(analyzer) -> None:
    """Scattered pixels over 30 % of a white frame toggle between 0.6 and 1.0 at 10 Hz: each
    pixel's darker end is under 0.8, so WCAG counts its flashes, but each cell's mean stays
    between 0.88 and 1.0 and read as never dark. Between 0.82 and 1.0 (a change of 0.18 whose
    darker end stays above 0.8) they do not flash."""
    dots = np.random.default_rng(1).random((H, W)) < 0.3
    (row,) = analyse(analyzer, [(blinking_dots(dots, (0.6, 1.0), (1.0, 1.0)), 30)])
    assert float(row[FLASHES]) == 10.0
    assert float(row[AREA]) == pytest.approx(dots.mean(), abs=0.01)
    (row,) = analyse(analyzer, [(blinking_dots(dots, (0.82, 1.0), (1.0, 1.0)), 30)])
    assert float(row[FLASHES]) == 0.0


def test_padding_never_creates_transitions(analyzer) -> None:
    item = prepare(flicker(square_wave(2, 30, 2.0), WHITE, BLACK), 30)
    noisy = dict(item, grid=item["grid"].clone())
    noisy["grid"][int(item["frames"]) :] = (
        torch.rand_like(noisy["grid"][int(item["frames"]) :]) * 320
    )
    placeholder = FlashPreparer(SMALL).placeholder()
    out = run(analyzer, [item, noisy, placeholder])
    torch.testing.assert_close(out[0], out[1])
    assert out[2].tolist() == [0.0] * len(NAMES)


def test_frame_rate_is_an_input(analyzer) -> None:
    """The same frames (a change every 6 frames) at 25 fps pass, at 60 fps they fail."""
    frames = flicker(np.floor(np.arange(96) / 6) % 2 == 1, WHITE, BLACK)
    out = analyse(analyzer, [(frames, 25), (frames, 60)])
    assert out[0, FLASHES] <= LIMIT < out[1, FLASHES]
    assert out[:, SECONDS].tolist() == pytest.approx([96 / 25, 96 / 60])


def test_worst_window_and_analysed_length(analyzer) -> None:
    calm_then_strobe = np.concatenate([np.zeros(60, bool), square_wave(6, 30, 3.0)])
    (row,) = analyse(analyzer, [(flicker(calm_then_strobe, WHITE, BLACK), 30)])
    assert 1.9 <= float(row[WORST]) <= 2.2
    assert float(row[SECONDS]) == SMALL.max_seconds  # 5 s of video, 4 s analysed


def test_a_batch_scores_each_video_as_alone(analyzer) -> None:
    items = [
        prepare(flicker(square_wave(hz, fps, 3.0), WHITE, BLACK), fps)
        for hz, fps in ((5, 30), (2, 25), (9, 60))
    ]
    together = run(analyzer, items)
    alone = torch.cat([run(analyzer, [i]) for i in items])
    torch.testing.assert_close(together, alone)


def test_encoded_video_through_decoding(tmp_path) -> None:
    """H.264 files through ``decode_video``, frames taller than ``analysis_height`` scaled down."""
    width, height = 640, 480
    strobe = samples.write_video(
        tmp_path / "strobe.mp4", samples.flashing_frames(width, height, fps=30, hz=6), frames=60
    )
    dim = samples.write_video(
        tmp_path / "dim.mp4",
        samples.flashing_frames(width, height, fps=30, hz=6, dark=170, bright=180),
        frames=60,
    )
    preparer = FlashPreparer(SMALL)
    items = []
    for path in (strobe, dim):
        (item,), info = decode_video(path.read_bytes(), [preparer], MediaLimits())
        assert (info.width, info.height, info.num_frames) == (width, height, 60)
        items.append(item)
    out = run(FlashAnalyzer(SMALL).eval(), items)
    assert float(out[0, FLASHES]) == 6.0
    assert float(out[1, FLASHES]) == 0.0


def test_a_variable_frame_rate_video_is_measured_on_its_timestamps(tmp_path) -> None:
    """A screen recording holds a still for 15 s (one frame a second), then strobes red and
    black at 60 fps for half a second: 30 transitions (the first from the still) in that
    second. At the average rate
    (about 3 fps) a one-second window would hold 3 frames and the strobe would pass."""
    settings = FlashSettings(max_seconds=20.0)
    strobe = samples.flashing_frames(W, H, fps=60, hz=30, dark=0, bright=255)
    path = samples.write_video(
        tmp_path / "vfr.mp4",
        lambda i: solid(128) if i < 15 else strobe(i),
        frames=45,
        shown_at=lambda i: i if i < 15 else 15 + (i - 15) / 60,
    )
    (item,), info = decode_video(path.read_bytes(), [FlashPreparer(settings)], MediaLimits())
    assert info.num_frames == 45
    assert info.fps < 4
    assert float(item["fps"]) == 60.0
    out = run(FlashAnalyzer(settings).eval(), [item], settings)[0]
    assert float(out[FLASHES]) == 15.0
    assert float(out[SECONDS]) == pytest.approx(15.5, abs=1 / 60)


@pytest.mark.parametrize(
    ("fmt", "loop", "frames", "flashes"),
    [
        ("WEBP", 0, 50, 5.0),
        ("WEBP", 3, 6, 2.5),
        ("WEBP", 1, 2, 0.5),
        ("GIF", 0, 50, 5.0),
        ("GIF", 2, 6, 2.5),  # a GIF's loop counts repeats after the first play
        ("GIF", None, 2, 0.5),
        ("PNG", 0, 50, 5.0),
        ("PNG", 3, 6, 2.5),
    ],
)
def test_an_animation_is_a_video_played_as_it_loops(fmt, loop, frames, flashes) -> None:
    """Animated WebP (which FFmpeg cannot animate: "no picture size"), GIF and APNG are read
    by Pillow at their frames' own times. A black/white blink of two 100 ms frames that
    loops for ever flashes 5 times a second on screen, yet once per pass: it is played pass
    after pass over 5 s, or as often as its ``loop`` says."""
    blink = [Image.new("RGB", (32, 24), colour) for colour in ("black", "white")]
    out = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    if loop is not None:
        options["loop"] = loop
    blink[0].save(out, fmt, save_all=True, append_images=blink[1:], duration=100, **options)
    settings = FlashSettings()
    (item,), info = decode_video(out.getvalue(), [FlashPreparer(settings)], MediaLimits())
    assert (info.num_frames, info.fps, info.warnings) == (frames, 10.0, ())
    assert info.seconds == pytest.approx(frames / 10)
    measured = run(FlashAnalyzer(settings).eval(), [item], settings)[0]
    assert float(measured[FLASHES]) == flashes
    assert float(measured[SECONDS]) == pytest.approx(frames / 10)


def test_an_apng_default_image_is_no_frame_and_frame_times_keep_their_fractions(tmp_path) -> None:
    """An APNG's default image (a cover outside its animation) was played every pass: a red
    cover made a grey shimmer read 3.5 red flashes. Frame times were cut to whole
    milliseconds: 1/60 s frames played 4 % fast, so a strobe counted more flashes than the
    same frames in an MP4."""
    grey = [Image.new("RGB", (32, 24), (v, v, v)) for v in (100, 110)]
    out = io.BytesIO()
    red = Image.new("RGB", (32, 24), (255, 0, 0))
    red.save(
        out, "PNG", save_all=True, append_images=grey, duration=[0, 100, 100], loop=0,
        default_image=True,
    )  # fmt: skip
    settings = FlashSettings()
    (item,), info = decode_video(out.getvalue(), [FlashPreparer(settings)], MediaLimits())
    assert (info.num_frames, info.seconds) == (50, pytest.approx(5.0))
    assert float(run(FlashAnalyzer(settings).eval(), [item], settings)[0][RED]) == 0.0
    strobe = samples.flashing_frames(W, H, fps=60, hz=3.0, dark=0, bright=255)
    frames = [Image.fromarray(strobe(i)) for i in range(120)]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=1000 / 60, loop=1)
    mp4 = samples.write_video(tmp_path / "same.mp4", strobe, frames=120, fps=60)
    counted = []
    for data in (out.getvalue(), mp4.read_bytes()):
        (item,), info = decode_video(data, [FlashPreparer(settings)], MediaLimits())
        counted.append(float(run(FlashAnalyzer(settings).eval(), [item], settings)[0][FLASHES]))
        assert info.seconds == pytest.approx(2.0, abs=1e-6) or info.seconds is None
    assert counted[0] == counted[1] == 3.0


def test_a_video_carrying_twice_its_declared_rate_is_analysed_to_its_end(tmp_path) -> None:
    """A Matroska file declaring 30 fps that carries 60 fps frames for 32 s, with a 5 Hz strobe
    in its last second: its timestamps, not the declared rate, say how long it is (the frame
    count alone read 60 s at frame 1,801 and cut the strobe off)."""
    strobe = samples.flashing_frames(W, H, fps=60, hz=5, dark=0, bright=255)
    path = samples.write_video(
        tmp_path / "misdeclared.mkv",
        lambda i: solid(128) if i < 1860 else strobe(i),
        frames=1920,
        shown_at=lambda i: i / 60,
    )
    settings = FlashSettings()
    (item,), info = decode_video(path.read_bytes(), [FlashPreparer(settings)], MediaLimits())
    assert info.warnings == ()
    assert info.num_frames == 1920
    out = run(FlashAnalyzer(settings).eval(), [item], settings)[0]
    assert float(out[SECONDS]) == pytest.approx(32.0, abs=0.05)
    assert float(out[FLASHES]) == 5.0


def test_a_variable_rate_file_without_a_frame_count_is_not_called_partial(tmp_path) -> None:
    """Matroska states no frame count: the estimate at its peak rate is no reason to warn; a
    cut file still says how much of its declared duration decoded."""
    path = samples.write_video(
        tmp_path / "vfr.mkv",
        lambda i: solid(128 if i % 2 else 64),
        frames=45,
        shown_at=lambda i: i if i < 15 else 15 + (i - 15) / 60,
    )
    data = path.read_bytes()
    _, info = decode_video(data, [FlashPreparer(SMALL)], MediaLimits())
    assert info.warnings == ()
    _, cut = decode_video(data[: len(data) // 3], [FlashPreparer(SMALL)], MediaLimits())
    assert "seconds it declares could be decoded" in " ".join(cut.warnings)


def test_constant_rate_timestamps_keep_one_slot_a_frame() -> None:
    ntsc = [round(i * 1001 / 30) / 1000 for i in range(300)]  # 29.97 fps on a 1 ms time base
    assert frame_slots(ntsc, 30000 / 1001, 60.0) is None
    assert frame_slots([0.0, None, 0.2], 10.0, 60.0) is None
    assert frame_slots([0.0, 0.5, 0.5, 1.0], 3.0, 60.0) is None  # repeated: not trusted
    assert slots_at([0.0, 1.0, 1.1, 1.2], 4.0) == ([0, 10, 11, 12], pytest.approx(10.0))
    assert slots_at([0.0, 1.0, 1.005, 1.01, 1.02], 5.0) == ([0, 60, 60, 61, 61], 60.0)


def slots_at(times: list[float], fps: float) -> tuple[list[int], float]:
    timeline = frame_slots(times, fps, 60.0)
    assert timeline is not None
    return timeline[0].tolist(), timeline[1]


def test_frames_are_held_until_the_next_one_and_changes_count_once() -> None:
    grid = np.zeros((4, 4, 1, 1), np.float32)
    grid[:, 0, 0, 0] = [0.1, 0.9, 0.2, 0.8]  # luminance
    grid[1:, 2, 0, 0] = [0.5, 0.25, 1.0]  # the share of the cell in each change
    out = on_timeline(grid, np.array([0, 3, 3, 5]), limit=100)
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.2, 0.8])
    assert out[:, 2, 0, 0].tolist() == [0, 0, 0, 0.5, 0, 1.0]
    assert on_timeline(grid, np.array([0, 3, 3, 5]), limit=4).shape[0] == 4


def test_the_timeline_peaks_at_the_measured_flash_counts(analyzer) -> None:
    """``timeline`` is the curve ``forward`` takes the maximum of: general and red flashes per
    one-second window, 0 past the video's frames."""
    red = solid((255, 0, 0))
    clips = [
        (flicker(square_wave(5, 30, 2.0), WHITE, BLACK), 30.0),
        (flicker(square_wave(2, 25, 1.5), red, BLACK), 25.0),
        ([GREY] * 20, 30.0),
    ]
    items = [prepare(frames, fps) for frames, fps in clips]
    measured = run(analyzer, items)
    batch = batched(items)
    with torch.no_grad():
        timeline = analyzer.timeline(*batch)
    assert timeline.shape == (3, 2, SMALL.max_frames)
    assert torch.equal(timeline.amax(-1), measured[:, :2])
    for row, (frames, _) in zip(timeline, clips, strict=True):
        assert not row[:, len(frames) :].any()
    assert float(timeline[0, 0].amax()) == pytest.approx(5.0, abs=0.5)


def test_cells_in_groups_measure_the_same_bit_for_bit() -> None:
    """Fixed groups of 5 and 64 cells (and as many stretches of frames) and groups sized by
    the batch against all cells at once, eager and traced at another batch size: the groups'
    loop is unrolled over fixed shapes, and tracing keeps the fixed groups."""
    torch.manual_seed(0)
    settings = FlashSettings(max_seconds=2.0)

    def analyzer(chunk: int = settings.chunk, working_set: int = 0) -> FlashAnalyzer:
        changed = dataclasses.replace(settings, chunk=chunk, working_set=working_set)
        return FlashAnalyzer(changed).eval()

    whole = analyzer(chunk=0, working_set=0)
    grid, frames, fps = whole.example_inputs(3)
    grid[0, :, 0] = torch.from_numpy(square_wave(6, 60, 2.0)).float().view(-1, 1, 1)
    frames[0], fps[0] = 120, 60.0
    per_cell = 2 * settings.max_frames  # elements of one cell of one video
    per_video = settings.grid_rows * settings.grid_cols * per_cell
    with torch.no_grad():
        expected = whole(grid, frames, fps)
        assert float(expected[0, FLASHES]) == 6.0
        for chunk in (5, 64):
            groups = analyzer(chunk=chunk, working_set=0)
            assert torch.equal(groups(grid, frames, fps), expected), chunk
        sizes = ((1, 1), (1, 7 * per_cell), (16, 1), (1, 2 * per_video), (16, 1 << 30))
        for chunk, working_set in sizes:
            # videos one at a time in groups of 1, 7 and 16 cells (max(chunk, cells the working
            # set holds)); two videos then one, all 256 cells at once; the whole batch at once
            sized = analyzer(chunk=chunk, working_set=working_set)
            assert torch.equal(sized(grid, frames, fps), expected), (chunk, working_set)
        traced = trace_save_load(groups, groups.example_inputs(2))
        assert torch.equal(traced(grid, frames, fps), expected)
        # traced, the groups are the fixed ones (4 of 64) whatever the working set
        sized = analyzer(chunk=64, working_set=1 << 30)
        graph = str(trace_save_load(sized, sized.example_inputs(2)).inlined_graph)
        assert graph.count("aten::topk") == str(traced.inlined_graph).count("aten::topk") == 4


def test_a_batch_padded_to_its_bucket_measures_what_the_longest_input_does() -> None:
    """Videos of 0.5 to 4 s at 25-60 fps in buckets of 1 and 2 s (60 and 120 frames at
    ``max_fps``, then the 240 of 4 s): bit for bit what the grids padded to 4 s give, per
    batch and per video, flashes, red flashes, areas and extended flashing alike."""
    bucketed = dataclasses.replace(SMALL, buckets=(1.0, 2.0))
    assert bucketed.bucket_frames == (60, 120, 240)
    analyzer = FlashAnalyzer(bucketed).eval()
    red = solid((255, 0, 0))
    clips = [
        (flicker(square_wave(5, 30, 0.5), WHITE, BLACK), 30.0),
        (flicker(square_wave(4, 25, 1.6), red, BLACK), 25.0),
        (flicker(square_wave(6, 60, 1.9), WHITE, GREY), 60.0),
        (flicker(square_wave(3, 30, 4.0), WHITE, BLACK), 30.0),
    ]
    items = [prepare(frames, fps, bucketed) for frames, fps in clips]
    for batch in (items[:2], items):  # buckets of 60 and 240 frames
        whole = [dict(i, grid=pad_to_bucket([i["grid"]], [SMALL.max_frames])[0]) for i in batch]
        expected = run(analyzer, whole, bucketed)
        assert torch.equal(run(analyzer, batch, bucketed), expected)
    for item, row in zip(items, expected, strict=True):  # each alone, in its own bucket
        assert torch.equal(run(analyzer, [item], bucketed)[0], row)
    assert (expected[:, FLASHES] + expected[:, RED] > 0).all()  # every clip flashes: not 0 == 0


def test_a_video_above_max_fps_says_how_much_of_it_was_measured(tmp_path) -> None:
    """The grid holds ``max_seconds`` at ``max_fps``: a faster video fills it early, and the
    frames after it are not measured; the warning says over how many seconds flashes were."""
    settings = FlashSettings(max_seconds=2.0, max_fps=10.0)  # 20 frames
    fast = samples.write_video(
        tmp_path / "fast.mp4", samples.flashing_frames(W, H, fps=30, hz=3), frames=45
    )
    preparer = FlashPreparer(settings)
    (item,), info = decode_video(fast.read_bytes(), [preparer], MediaLimits())
    assert int(item["frames"]) == 20
    (warning,) = preparer.warnings(info)
    assert warning.startswith("video: flashes measured over its first 0.667 s of 1.5 s")
    slow = dataclasses.replace(info, fps=10.0, num_frames=15)
    assert preparer.warnings(slow) == ()
    assert FlashPreparer(FlashSettings()).warnings(info) == ()  # 60 fps: all 45 frames
