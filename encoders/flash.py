"""Flashing analyzer: WCAG 2.3.1 general and red flashes, per region, inside the graph.

Preparation decodes every frame (at the video's own rate, up to ``max_seconds``; a
variable-frame-rate video is laid on a constant-rate timeline by its timestamps, see
:func:`frame_slots`) and reduces each to a grid of cells holding the cell's mean relative
luminance and mean red saturation, both computed per pixel in linear light as EA's IRIS does
(sRGB decoding by the IEC 61966-2-1 curve; luminance ``0.2126 R + 0.7152 G + 0.0722 B``; red
saturation ``(R - G - B) x 320`` where ``R / (R + G + B) >= 0.8``, else 0). Frames taller than
``analysis_height`` are first scaled down by FFmpeg's area filter on the encoded values; only
detail finer than that scale is averaged before linearisation. Per cell and frame, preparation
also measures the share of the cell's pixels taking part in its change since the last frame
(:func:`taking_part`), so the area rule counts the part of a cell that flashes, not the whole
cell.

The graph follows each cell's signal the way IRIS follows the frame average:

- a transition is a change of at least ``luminance_threshold`` (0.1) in relative luminance, or
  ``red_threshold`` (20) in red saturation, of the part of the cell that changes (each
  frame's change of the cell mean over its share), accumulated over a run of frames changing in one
  direction (unchanged frames continue the run) within the last second; a luminance
  transition also needs its darker end below ``dark_threshold`` (0.8); a run counts once, at
  its first frame that qualifies. (IRIS checks the darker end only where the change first
  reaches the threshold, so a smooth fall from white never counts there; WCAG counts it.
  Where the change happens within one frame, as in IRIS's test videos, the two agree.)
- per cell, the transitions of each one-second window (the last ``round(fps)`` frames);
- a window's flash count is the number of transitions, halved, that at least ``area_fraction``
  (25 %) of the frame reaches, each cell counting for the mean share of it that took part in
  its transitions: cells count separately, so two halves flashing in opposite phase are two
  flashing areas (a frame average would see no change at all).

Every step is element-wise arithmetic, padding, slicing, ``index_select`` and ``topk`` over
tensors of fixed shape: the runs and running sums are log-depth prefix scans, and the frame
count and frame rate are tensors. Frames past ``frames`` are masked out, so padding never
creates a transition. The cells are followed in groups and compared across the frame in as
many stretches of frames, so the intermediates of a large batch stay nearer the cache: groups
of ``chunk`` cells when traced (a loop over a fixed number of parts, unrolled), groups sized by
the batch at hand when eager (``working_set``), so one short video runs in a few large steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch import Tensor
from torch.nn import functional as F

from encoders.base import Encoder, InputSpec, group_size, in_row_groups, length_buckets
from encoders.media import VideoInfo
from encoders.registry import register_encoder
from encoders.rules import FlashRule

LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)
PLANES = 4  # per cell: luminance, red saturation, and the share of the cell changing in each
PART_STEP = 1 / 4096  # shares are rounded to this: a whole cell reads exactly 1
AREA_TOLERANCE = 1e-3  # of a cell: sums of shares that round just under the area still reach it
RED_SCALE = 320.0
RED_RATIO = 0.8


@dataclass(frozen=True)
class FlashSettings:
    """Settings of the flashing analyzer (defaults: WCAG 2.3.1 as EA's IRIS applies it).

    Attributes:
        max_seconds: Longest stretch analysed from the start of a video.
        max_fps: Highest frame rate analysed in full; with ``max_seconds`` it sizes the input
            (a faster video is analysed for ``max_seconds * max_fps / fps`` seconds).
        grid_rows: Rows of cells each frame is reduced to.
        grid_cols: Columns of cells.
        analysis_height: Frames taller than this are scaled down before linearisation.
        luminance_threshold: Relative-luminance change of a transition.
        dark_threshold: The darker end of a luminance transition must be below this.
        red_threshold: Red-saturation change of a red transition.
        area_fraction: Fraction of the frame that must flash for a window to count.
        extended_window_s: Window of the extended-flash measure (an Ofcom / ITU-R BT.1702 rule
            that IRIS applies; WCAG has none).
        extended_min_flashes: Fewest flashes in a second that count towards the extended measure.
        extended_max_flashes: Most flashes in a second that count towards it (more is a
            flash failure of its own).
        part_floor: A pixel changing by this fraction of a transition's threshold (or by half
            its cell's mean change, if less) may take part in its cell's change
            (:func:`taking_part`).
        chunk: Cells analysed together in a traced or exported graph (0: all at once). The
            graph follows the cells in ``ceil(cells / chunk)`` groups, then compares them
            across the frame in as many stretches of frames, so its intermediates stay nearer
            the cache as batches grow (a group still holds the whole batch); the measurements
            are the same bit for bit.
        working_set: Elements of one group's intermediates when run eagerly (0: groups of
            ``chunk`` there too): the groups are then sized by the batch at hand, never
            smaller than ``chunk``, so one short video runs all its cells at once (a traced
            graph serves any batch, so it keeps ``chunk``).
        buckets: Seconds (at ``max_fps``) a batch's grids are zero-padded to: the smallest
            that holds its longest video; ``max_seconds`` is always the last, ``[]`` pads
            every video to it. The measurements equal those of the grid padded to
            ``max_seconds`` (frames past ``frames`` are masked, every window looks back).
    """

    max_seconds: float = 60.0
    max_fps: float = 60.0
    grid_rows: int = 16
    grid_cols: int = 16
    analysis_height: int = 360
    luminance_threshold: float = 0.1
    dark_threshold: float = 0.8
    red_threshold: float = 20.0
    area_fraction: float = 0.25
    extended_window_s: float = 5.0
    extended_min_flashes: float = 2.0
    extended_max_flashes: float = 3.0
    part_floor: float = 0.1
    chunk: int = 16
    working_set: int = 2**19
    buckets: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0, 60.0)

    @property
    def max_frames(self) -> int:
        return math.ceil(self.max_seconds * self.max_fps)

    def frames_measured(self, fps: float) -> int:
        """How many frames of a video at ``fps`` are measured: ``max_seconds`` of them, at
        most ``max_frames``."""
        return min(self.max_frames, math.ceil(self.max_seconds * fps))

    @property
    def bucket_frames(self) -> tuple[int, ...]:
        """The buckets in frames at ``max_fps``, ending at ``max_frames``."""
        frames = [math.ceil(b * self.max_fps) for b in self.buckets]
        return length_buckets(frames, self.max_frames, "buckets")


def _delay(x: Tensor, steps: int) -> Tensor:
    """``x`` delayed by ``steps`` frames along the last dim, zeros entering."""
    return torch.constant_pad_nd(x[..., :-steps], [steps, 0])


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``x[..., index[..., t]]`` along the last dim: a gather, written as ``index_select``.

    Args:
        x: [..., T].
        index: [..., T] int64 in [0, T), broadcastable to ``x``.
    """
    t = x.shape[-1]
    index = index.expand(x.shape).reshape(-1, t)
    rows = torch.arange(index.shape[0], device=x.device).unsqueeze(1) * t
    return x.reshape(-1).index_select(0, (index + rows).reshape(-1)).reshape(x.shape)


def _log_scan(x: Tensor, length: int, combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Inclusive prefix scan of an associative ``combine`` over the last dim (``length``)."""
    step = 1
    while step < length:
        x = combine(x, _delay(x, step))
        step *= 2
    return x


def _blocked_scan(x: Tensor, length: int, combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The same scan, in blocks of ``ceil(sqrt(length))`` frames: log-depth within the blocks,
    then across the block totals (zero must be ``combine``'s neutral element)."""
    side = math.ceil(math.sqrt(length))
    blocks = torch.constant_pad_nd(x, [0, side * side - length])
    blocks = blocks.reshape(*x.shape[:-1], side, side)
    within = _log_scan(blocks, side, combine)
    before = _delay(_log_scan(within[..., -1], side, combine), 1)  # the earlier blocks
    return combine(within, before.unsqueeze(-1)).flatten(-2)[..., :length]


def _windowed(running: Tensor, lag: Tensor) -> Tensor:
    """``running[t] - running[t - lag]`` (``running`` itself where ``t < lag``): the sum over
    the last ``lag`` frames from an inclusive running sum [B, ..., T]; ``lag`` [B, 1, ...]."""
    steps = torch.arange(running.shape[-1], device=running.device)
    earlier = steps - lag
    return running - _take(running, earlier.clamp(min=0)) * (earlier >= 0).float()


def _parts(size: int, parts: int) -> list[tuple[int, int]]:
    """``(start, end)`` of ``parts`` near-equal consecutive ranges covering ``range(size)``."""
    edges = [round(i * size / parts) for i in range(parts + 1)]
    return [(start, end) for start, end in pairwise(edges) if end > start]


@register_encoder("flash", settings=FlashSettings)
class FlashAnalyzer(Encoder):
    """WCAG 2.3.1 flash counts of a video reduced to a grid of cells.

    Inputs: ``grid`` [batch, T, 4, rows, cols] (per frame and cell: relative luminance, red
    saturation, and the shares of the cell taking part in each one's change since the last
    frame, 0 where it did not change), ``frames`` [batch] int64 (frames holding video),
    ``fps`` [batch] float.

    Output [batch, 6]: ``max_flashes`` and ``max_red_flashes`` (most general / red flashes in
    any one-second window over at least ``area_fraction`` of the frame; transitions / 2),
    ``flash_area`` (fraction of the frame with at least one flash in the worst window, cells by
    their flashing share: the one
    with the most flashes, then the largest such area; 0 s when nothing flashes),
    ``worst_window_s`` (start of that window), ``extended_s`` (most seconds, within any
    ``extended_window_s``, of windows holding ``extended_min_flashes`` to
    ``extended_max_flashes`` flashes; IRIS's extended failure is 4 s in 5 s) and ``seconds``
    (video analysed).
    """

    modality = "video"
    kind = "analyzer"
    rule = FlashRule
    traced_lengths_free = False  # the scans' block sizes and the frame stretches
    rows_apart = True
    measurement_names = (
        "max_flashes",
        "max_red_flashes",
        "flash_area",
        "worst_window_s",
        "extended_s",
        "seconds",
    )
    thresholds: Tensor
    dark: Tensor

    @classmethod
    def preparer(cls, settings: Any) -> FlashPreparer:
        return FlashPreparer(settings)

    def __init__(self, settings: FlashSettings) -> None:
        super().__init__()
        self.output_dim = len(self.measurement_names)
        cells = settings.grid_rows * settings.grid_cols
        shape = (settings.max_frames, PLANES, settings.grid_rows, settings.grid_cols)
        self.input_spec = (
            InputSpec("grid", shape, torch.float32, settings.bucket_frames),
            InputSpec("frames", (), torch.int64),
            InputSpec("fps", (), torch.float32),
        )
        self.chunk = settings.chunk
        self.working_set = settings.working_set
        self.cells = cells
        self.area_cells = settings.area_fraction * cells - AREA_TOLERANCE
        self.extended_window_s = settings.extended_window_s
        self.extended_band = (2 * settings.extended_min_flashes, 2 * settings.extended_max_flashes)
        thresholds = [settings.luminance_threshold, settings.red_threshold]
        self.register_buffer("thresholds", torch.tensor(thresholds).view(1, 2, 1, 1), False)
        dark = [settings.dark_threshold, 1e9]  # the darker-end rule is for luminance only
        self.register_buffer("dark", torch.tensor(dark).view(1, 2, 1, 1), False)

    def forward(self, grid: Tensor, frames: Tensor, fps: Tensor) -> Tensor:
        """Args: grid [B, T, 4, R, C], frames [B], fps [B]. Returns [B, 6]."""
        b, t = grid.shape[0], int(grid.shape[1])  # the length is baked when traced
        n = frames.clamp(0, t)
        rate = fps.float().clamp(min=1.0)
        second = torch.floor(rate + 0.5).long().clamp(1, t).view(b, 1, 1, 1)
        steps = torch.arange(t, device=grid.device)
        valid = (steps < n.view(b, 1, 1, 1)).float()

        per_window, area = self._windows(grid, valid, second)
        flashes = per_window.amax(-1) / 2

        worst = per_window.amax(1)  # [B, T]
        key = worst + 0.5 * area - (1 - valid.view(b, t))
        pick = F.one_hot(key.argmax(-1), t).float()
        flash_area = (pick * area).sum(-1)
        worst_end = (pick * steps.float()).sum(-1)
        worst_start = ((worst_end - second.view(b).float() + 1) / rate).clamp(min=0.0)

        low, high = self.extended_band
        sustained = (per_window >= low).float() * (per_window <= high).float()
        window = torch.floor(self.extended_window_s * rate + 0.5).long().clamp(1, t)
        sustained_frames = _windowed(_blocked_scan(sustained, t, torch.add), window.view(b, 1, 1))
        extended = (sustained_frames * sustained).amax(-1).amax(-1) / rate
        seconds = n.float() / rate
        return torch.stack(
            [flashes[:, 0], flashes[:, 1], flash_area, worst_start, extended, seconds], dim=1
        )

    def timeline(self, grid: Tensor, frames: Tensor, fps: Tensor) -> Tensor:
        """Flashes in the one-second window ending at each frame (what ``forward`` takes the
        maximum of: ``max_flashes`` and ``max_red_flashes`` are this curve's peaks).

        Args: grid [B, T, 4, R, C], frames [B], fps [B].

        Returns:
            [B, 2, T]: general and red flashes (transitions / 2) over at least
            ``area_fraction`` of the frame, 0 past ``frames``.
        """
        b, t = grid.shape[0], int(grid.shape[1])  # the length is baked when traced
        second = torch.floor(fps.float().clamp(min=1.0) + 0.5).long().clamp(1, t).view(b, 1, 1, 1)
        steps = torch.arange(t, device=grid.device)
        valid = (steps < frames.clamp(0, t).view(b, 1, 1, 1)).float()
        return self._windows(grid, valid, second)[0] / 2

    def _windows(self, grid: Tensor, valid: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """Transitions per one-second window: videos in groups of rows when eager
        (:func:`in_row_groups`), then cells in groups and frames in stretches.

        Args:
            grid: [B, T, 4, R, C].
            valid: [B, 1, 1, T] 1 for frames holding video.
            second: [B, 1, 1, 1] frames in one second.

        Returns:
            Transitions reached by ``area_fraction`` of the frame [B, 2, T] and the fraction of
            the frame with at least one flash [B, T], each window named by its last frame, 0
            past the video.
        """
        per_row = 2 * self.cells * int(grid.shape[1])  # the per-cell counts of one video
        inputs = (grid, valid, second)
        per_window, area = in_row_groups(self._batch_windows, inputs, self.working_set, per_row)
        return per_window, area

    def _batch_windows(self, grid: Tensor, valid: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`_windows` of the rows at hand, all at once."""
        b, t = grid.shape[0], int(grid.shape[1])  # the length is baked when traced
        planes = grid.float().flatten(3).permute(0, 2, 3, 1)  # [B, 4, cells, T]
        v, signed = planes[:, :2], planes[:, 2:]  # [B, 2, cells, T] each
        dark_part = (signed < 0).float()  # the pixels making the change end below 0.8
        part = signed.abs()
        part = part + (part <= 0).float()  # unknown (no change): the whole cell
        # never finer than the traced plan: smaller groups measured slower (a sort across the
        # cells per group and stretch), larger ones only pay while the batch is small
        size = max(group_size(self.working_set, b * 2 * t, self.cells, self.chunk), self.chunk)
        groups = _parts(self.cells, math.ceil(self.cells / size))
        counts, areas = [], []  # [B, 2, cells, T] each: per cell, in each window
        for start, end in groups:
            cells = slice(start, end)
            count, area = self._per_cell(
                v[:, :, cells], part[:, :, cells], dark_part[:, :, cells], valid, second
            )
            counts.append(count)
            areas.append(area)
        per_cell, per_cell_area = torch.cat(counts, dim=2), torch.cat(areas, dim=2)
        per_window_parts, area_parts = [], []
        for start, end in _parts(t, len(groups)):
            per_window, area = self._per_window(
                per_cell[..., start:end], per_cell_area[..., start:end]
            )
            per_window_parts.append(per_window)
            area_parts.append(area)
        per_window = torch.cat(per_window_parts, dim=-1) * valid.view(b, 1, t)  # [B, 2, T]
        return per_window, torch.cat(area_parts, dim=-1) * valid.view(b, t)  # [B, T]

    def _per_cell(
        self, v: Tensor, part: Tensor, dark_part: Tensor, valid: Tensor, second: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Transitions of each cell in the one-second window ending at each frame, and the
        share of the cell they flash.

        Args:
            v: [B, 2, cells, T] luminance and red saturation of some of the cells.
            part: [B, 2, cells, T] share of each cell taking part in its change at each frame.
            dark_part: [B, 2, cells, T] 1 where the pixels making a frame's change end below
                the darker-end threshold (luminance; red has no such rule).
            valid: [B, 1, 1, T] 1 for frames holding video.
            second: [B, 1, 1, 1] frames in one second.

        Returns:
            Transitions [B, 2, cells, T] and the mean share of the cell that took part in
            them [B, 2, cells, T] (1 where there were none).
        """
        t = int(v.shape[-1])
        transitions = self._transitions(v, part, dark_part, valid, second)
        count = _windowed(_blocked_scan(transitions, t, torch.add), second)
        shares = _windowed(_blocked_scan(transitions * part, t, torch.add), second)
        return count, (shares + (count <= 0).float()) / count.clamp(min=1.0)

    def _per_window(self, per_cell: Tensor, share: Tensor) -> tuple[Tensor, Tensor]:
        """Across the cells, for some of the frames: the area each count of transitions
        reaches, cells weighted by the share of them that flashes.

        Args:
            per_cell: [B, 2, cells, frames] transitions per cell in each window.
            share: [B, 2, cells, frames] share of each cell taking part in them.

        Returns:
            Transitions reached by ``area_fraction`` of the frame [B, 2, frames] and the
            fraction of the frame with at least one flash (two transitions) [B, frames].
        """
        counts, order = per_cell.transpose(2, 3).topk(self.cells, dim=-1)  # most first
        shares = _take(share.transpose(2, 3), order)
        covered = _log_scan(shares, self.cells, torch.add)  # area of the cells with as many or more
        reached_by_area = (counts * (covered >= self.area_cells).float()).amax(-1)
        flashing = (share * (per_cell >= 2).float()).amax(1)  # [B, cells, frames]
        # the mean over contiguous cells: its rounding then does not depend on the frames
        area = flashing.transpose(1, 2).contiguous().mean(-1)
        return reached_by_area, area

    def _transitions(
        self, v: Tensor, part: Tensor, dark_part: Tensor, valid: Tensor, second: Tensor
    ) -> Tensor:
        """Where each cell's transitions happen, judged by the change of the part of the cell
        that changes.

        Args:
            v: [B, 2, cells, T] luminance and red saturation per cell and frame.
            part: [B, 2, cells, T] share of the cell taking part in each frame's change.
            dark_part: [B, 2, cells, T] 1 where the part making a frame's change ends dark.
            valid: [B, 1, 1, T] 1 for frames holding video.
            second: [B, 1, 1, 1] frames in one second.

        Returns:
            [B, 2, cells, T]: 1 at the frame where a transition counts, else 0.
        """
        t = int(v.shape[-1])
        steps = torch.arange(t, device=v.device)
        # Runs: frames changing in one direction (unchanged frames extend a run). A rising
        # run's base is the last frame that fell, a falling run's the last one that rose.
        change = torch.constant_pad_nd(v[..., 1:] - v[..., :-1], [1, 0]) * valid
        # The level of the part that changes: the cell's changes, each over its share.
        level = _blocked_scan(change / part, t, torch.add)
        moved = torch.stack([(change > 0).float(), (change < 0).float()]) * (steps + 1)
        latest = _blocked_scan(moved, t, torch.max)  # frame + 1 of the latest rise / fall
        last_rise, last_fall = latest.unbind(0)
        direction = (last_rise > last_fall).float() - (last_fall > last_rise).float()
        run_base = torch.min(last_rise, last_fall) - 1
        # IRIS accumulates at most one second of a run: the base is at most a second back.
        base_frame = torch.max(run_base, (steps - second).float()).clamp(min=0).long()
        reached = (level - _take(level, base_frame)).abs() * direction.abs() >= self.thresholds
        # the darker end below 0.8: of the cell's mean, or of the pixels making the change
        # (dots blinking on a white page leave the mean above it)
        dark = torch.max((torch.min(v, _take(v, base_frame)) < self.dark).float(), dark_part)
        qualifies = reached.float() * dark * valid
        # A run counts once, at the first frame that qualifies. IRIS tests the darker end only
        # where the change first reaches the threshold, so a smooth fall from white would never
        # count there; WCAG counts it (the darker image of the pair is the end of the fall).
        again = (direction == _delay(direction, 1)).float() * _delay(qualifies, 1)
        return qualifies * (1 - again)

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        spec = self.input_spec[0]
        t = spec.shape[0]
        grid = torch.rand(batch_size, *spec.shape)
        grid[:, :, 1] *= RED_SCALE * (grid[:, :, 1] > 0.7)
        frames = torch.randint(1, t + 1, (batch_size,))
        fps = torch.tensor([24.0, 25.0, 29.97, 30.0, 50.0, 60.0])[torch.arange(batch_size) % 6]
        return grid, frames, fps


def srgb_to_linear() -> np.ndarray:
    """Lookup table [256] float32: 8-bit sRGB code value -> linear light (IEC 61966-2-1)."""
    c = np.arange(256) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def cell_means(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Means of ``plane`` [height, width] over a ``rows`` x ``cols`` grid of equal areas.

    Cell edges fall between pixels or inside them (a pixel split between two cells counts in
    each by its share), so the mean of the cells is exactly the mean of the plane. Running
    sums, not a matrix product: BLAS threads would fight the video decoder's for the cores.

    Returns:
        [rows, cols] float32.
    """
    for axis, cells in ((0, rows), (1, cols)):
        size = plane.shape[axis]
        edges = np.arange(cells + 1) * size / cells
        whole = np.minimum(edges.astype(np.int64), size - 1)  # edge = whole + share
        share = np.expand_dims(edges - whole, 1 - axis).astype(np.float32)
        running = np.cumsum(plane, axis=axis, dtype=np.float32)  # sum up to and with a pixel
        before = running.take(whole - 1, axis) * np.expand_dims(whole > 0, 1 - axis)
        through = running.take(whole, axis)
        plane = np.diff(before + share * (through - before), axis=axis) * (cells / size)
    return plane.astype(np.float32)


def luminance_and_red(rgb: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel relative luminance and red saturation of an 8-bit RGB image, as IRIS computes.

    Args:
        rgb: [height, width, 3] uint8 sRGB.
        lut: :func:`srgb_to_linear`.

    Returns:
        Luminance [height, width] in [0, 1] and red saturation [height, width] in [0, 320].
    """
    red, green, blue = lut[rgb[..., 0]], lut[rgb[..., 1]], lut[rgb[..., 2]]
    wr, wg, wb = LUMINANCE_WEIGHTS
    luminance = wr * red + wg * green + wb * blue
    rest = green + blue
    saturated = red >= RED_RATIO / (1 - RED_RATIO) * rest  # R / (R + G + B) >= 0.8
    return luminance, np.maximum(red - rest, 0) * RED_SCALE * saturated


def taking_part(
    change: np.ndarray,
    cell_change: np.ndarray,
    floor: float,
    darker: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """Share of each cell's pixels that make the cell's change since the last frame.

    A pixel is a candidate when it changed in its cell's direction by at least ``floor`` or
    half the cell's mean change, whichever is less (a slow fade's small steps still count);
    of the candidates, those that changed by at least half their change-weighted mean
    (``sum(d^2) / sum(d)``) make the change. A patch changing by D over a share f of a cell
    moves the cell's mean by f D: its pixels make the change and the still ones around it do
    not, so the share is f to the pixel; a change spread over the cell (a fade, a full-cell
    flash) is shared by all of it. Faint changes beside a strong one (film grain, a shimmer
    under the threshold) weigh in by their square, so they do not make the change and do not
    dilute the change the graph reads (the cell's change over its share).

    Args:
        change: [height, width] per-pixel change (luminance or red saturation).
        cell_change: [rows, cols] change of the cell means (the mean of ``change`` per cell).
        floor: The most change a pixel needs to be a candidate.
        darker: Luminance only: each pixel's darker end of its change ([height, width], the
            lower of this frame and the last) and the darker-end threshold (0.8).

    Returns:
        [rows, cols] float32 in [0, 1], rounded to ``PART_STEP``; 0 where the cell did not
        change. With ``darker``, a share is negative where the pixels making the change end,
        on average, below the threshold: dots toggling 0.6 to 1.0 on a white page are dark
        there while their cell's mean stays above 0.8.
    """
    rows, cols = cell_change.shape
    height, width = change.shape
    row_of = ((np.arange(height) + 0.5) * rows / height).astype(np.int64)  # cell of the centre
    col_of = ((np.arange(width) + 0.5) * cols / width).astype(np.int64)
    moved = change * np.sign(cell_change)[row_of][:, col_of]  # > 0: in the cell's direction
    need = np.minimum(floor, 0.5 * np.abs(cell_change))[row_of][:, col_of]
    candidate = np.where((moved >= need) & (need > 0), moved, 0).astype(np.float32)
    squares, sums = (
        _centred_sums(c, row_of, col_of, (rows, cols)) for c in (candidate * candidate, candidate)
    )
    weighted = np.divide(squares, sums, out=np.zeros_like(sums), where=sums > 0)
    making = (candidate >= 0.5 * weighted[row_of][:, col_of]) & (candidate > 0)
    share = cell_means(making.astype(np.float32), rows, cols)
    if darker is not None:
        levels, threshold = darker
        dark_sum, count = (
            _centred_sums(c.astype(np.float32), row_of, col_of, (rows, cols))
            for c in (np.where(making, levels, 0), making)
        )
        share = np.where((count > 0) & (dark_sum < threshold * count), -share, share)
    return (np.round(share / PART_STEP) * PART_STEP).astype(np.float32)


def _centred_sums(
    plane: np.ndarray, row_of: np.ndarray, col_of: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Sums of ``plane`` per cell of a ``shape`` grid, each pixel in the cell of its centre
    (``row_of``, ``col_of``: non-decreasing cell indices); 0 in cells holding no centre (a
    frame smaller than the grid)."""
    rows = np.flatnonzero(np.diff(row_of, prepend=-1))  # first pixel of each cell with one
    cols = np.flatnonzero(np.diff(col_of, prepend=-1))
    sums = np.zeros(shape, plane.dtype)
    sums[np.ix_(row_of[rows], col_of[cols])] = np.add.reduceat(
        np.add.reduceat(plane, rows, axis=0), cols, axis=1
    )
    return sums


def frame_slots(
    times: Sequence[float | None], fps: float, max_fps: float
) -> tuple[np.ndarray, float] | None:
    """Where a variable-frame-rate video's frames fall on a constant-rate timeline.

    A frame is shown from its timestamp until the next one's, so a screen recording that
    holds a still for seconds and then strobes at 60 fps is 1 s of strobe, not a few frames
    spread over the average rate. Returns the slot of each frame at the rate of the video's
    shortest frame interval (at most ``max_fps``), and that rate; None when every interval is
    within half a frame of ``1 / fps`` (constant rate: frames stay one slot each, as decoded)
    or the timestamps are missing or out of order.
    """
    if len(times) < 2 or any(t is None for t in times):
        return None
    stamps = np.asarray(times, np.float64)
    gaps = np.diff(stamps)
    if (gaps <= 0).any() or (np.abs(gaps * fps - 1) < 0.5).all():
        return None
    rate = min(max_fps, max(fps, 1 / float(gaps.min())))
    return np.round((stamps - stamps[0]) * rate).astype(np.int64), rate


def on_timeline(grid: np.ndarray, slots: np.ndarray, limit: int) -> np.ndarray:
    """Each frame's grid held over its slots (a held frame changes nothing, so its shares
    are 0); frames sharing a slot (intervals under ``1 / max_fps``) keep the last one's
    levels and the largest share of each cell (dark, negative, if any of them was); slots
    past ``limit`` are dropped."""
    frames = min(int(slots[-1]) + 1, limit)
    shown = slots < frames
    held = np.zeros(frames, np.int64)
    np.maximum.at(held, slots[shown], np.flatnonzero(shown))
    held = np.maximum.accumulate(held)
    out = grid[held]
    shares, dark = np.zeros_like(out[:, 2:]), np.zeros(out[:, 2:].shape, bool)
    np.maximum.at(shares, slots[shown], np.abs(grid[shown, 2:]))
    np.logical_or.at(dark, slots[shown], grid[shown, 2:] < 0)
    out[:, 2:] = np.where(dark, -shares, shares)
    return out


class _FlashGrid:
    """Reduces each frame of one video to its luminance / red grid and the shares of the
    cells taking part in each change."""

    def __init__(self, info: VideoInfo, settings: FlashSettings, lut: np.ndarray) -> None:
        self.fps = info.fps
        self.lut = lut
        self.rows_cols = (settings.grid_rows, settings.grid_cols)
        self.limit = settings.frames_measured(info.fps)
        # where the declared rate is wrong or variable, frames past ``limit`` may still fall
        # within ``max_seconds``: their timestamps decide (:meth:`analysed`); the rows are
        # only touched as frames arrive
        self.grid = np.zeros((settings.max_frames, PLANES, *self.rows_cols), np.float32)
        floor = settings.part_floor
        self.floors = (floor * settings.luminance_threshold, floor * settings.red_threshold)
        self.dark = settings.dark_threshold
        self.previous: tuple[np.ndarray, np.ndarray] | None = None
        self.max_height = settings.analysis_height
        self.reformatter = VideoReformatter()  # one scaler for every frame (6x faster at 720p)
        self.count = 0
        self.settings = settings
        self.times: list[float | None] = []

    def analysed(self, time: float | None) -> bool:
        """Whether a frame shown at ``time`` falls within ``max_seconds``: the first ``limit``
        frames do; later ones (more frames than the declared rate gives) by their timestamp,
        up to ``max_frames``."""
        if self.count < self.limit:
            return True
        first = self.times[0] if self.times else None
        if self.count >= self.grid.shape[0] or time is None or first is None:
            return False
        return time - first < self.settings.max_seconds - 0.5 / self.fps

    def add(self, frame: av.VideoFrame) -> None:
        if not self.analysed(frame.time):
            return
        height = min(frame.height, self.max_height)
        width = max(1, round(frame.width * height / frame.height))
        rgb = self.reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA"
        ).to_ndarray()
        planes = luminance_and_red(rgb, self.lut)
        for i, plane in enumerate(planes):
            if i == 0 or plane.any():  # most frames hold no saturated red: their red grid stays 0
                self.grid[self.count, i] = cell_means(plane, *self.rows_cols)
            if self.previous is None or plane.shape != self.previous[i].shape:
                continue
            cell_change = self.grid[self.count, i] - self.grid[self.count - 1, i]
            if cell_change.any():
                change = plane - self.previous[i]
                darker = (np.minimum(plane, self.previous[i]), self.dark) if i == 0 else None
                self.grid[self.count, 2 + i] = taking_part(
                    change, cell_change, self.floors[i], darker
                )
        self.previous = planes
        self.times.append(frame.time)
        self.count += 1

    def finish(self) -> dict[str, Tensor]:
        grid, fps = self.grid[: max(self.count, 1)], self.fps
        timeline = frame_slots(self.times, self.fps, self.settings.max_fps)
        if timeline is not None:
            slots, fps = timeline
            grid = on_timeline(grid, slots, self.settings.frames_measured(fps))
        return {
            "grid": torch.from_numpy(grid.copy()),
            "frames": torch.tensor(grid.shape[0] if self.count else 0, dtype=torch.int64),
            "fps": torch.tensor(fps, dtype=torch.float32),
        }


class FlashPreparer:
    """Every frame of a video (up to ``max_seconds``) as a luminance / red grid, as many
    frames as it has; collation pads a batch to its bucket."""

    def __init__(self, settings: FlashSettings) -> None:
        self.settings = settings
        self.lut = srgb_to_linear()
        self.buckets = {"grid": settings.bucket_frames}

    def start(self, info: VideoInfo) -> _FlashGrid:
        return _FlashGrid(info, self.settings, self.lut)

    def warnings(self, media: VideoInfo) -> tuple[str, ...]:
        """Flashes are measured over the first ``max_seconds`` and at most ``max_frames``
        frames: a video above ``max_fps`` fills them sooner (120 fps: after 30 s), and its later
        frames are not measured. Say so."""
        s = self.settings
        measured = s.frames_measured(media.fps)
        if media.num_frames <= measured:
            return ()
        return (
            f"video: flashes measured over its first {measured / media.fps:.3g} s of "
            f"{media.num_frames / media.fps:.3g} s (at most {s.max_seconds:g} s and "
            f"{s.max_frames} frames: max_fps {s.max_fps:g}, the video {media.fps:.3g} fps)",
        )

    def placeholder(self) -> dict[str, Tensor]:
        s = self.settings
        return {
            "grid": torch.zeros(1, PLANES, s.grid_rows, s.grid_cols),
            "frames": torch.tensor(0, dtype=torch.int64),
            "fps": torch.tensor(30.0),
        }
