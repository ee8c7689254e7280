"""Analyzer throughput by batch size, whole inputs at once vs in chunks, in one run.

Each analyzer (default 60 s inputs) is traced at batch 2 twice, unchunked (``chunk`` /
``time_chunk`` 0, the old path) and chunked (the default settings: the fixed plan a traced
graph keeps), and also run eagerly with its default settings (groups or spans sized by the
batch at hand, ``working_set``: what offline scoring runs). The image-quality analyzer (512 px
canvases) has no chunks: it runs eagerly over the whole batch and in groups, and traced. Each is timed at every batch size
on the same random inputs; rounds alternate between the variants and batch sizes, and each
cell keeps its best round, so load on the machine hits all alike. ``same`` says whether the
variants' measurements are equal bit for bit at every batch size.

A second table prices the flash area rule: the graph per item at batch 1 on grids of 16, 32
and 64 cells a side (a finer grid is the other way to a tighter area), and the preparation
per frame with the part of it that measures the shares of the cells taking part in a change.

    python -m benchmarks.analyzer_batch [--batches 1,4,16,32] [--rounds 3] [--threads 1]
        [--analyzers flash,loudness,image_quality]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import av
import torch

from benchmarks.common import Report, markdown_table
from encoders.base import Encoder
from encoders.flash import (
    FlashAnalyzer,
    FlashPreparer,
    FlashSettings,
    cell_means,
    luminance_and_red,
    srgb_to_linear,
    taking_part,
)
from encoders.loudness import LoudnessAnalyzer, LoudnessSettings
from encoders.media import VideoInfo
from encoders.quality import ImageQualityAnalyzer, QualitySettings
from ensemble import samples

# per analyzer: variant -> (settings changed, traced)
VARIANTS: dict[str, dict[str, tuple[dict[str, Any], bool]]] = {
    "flash": {
        "unchunked": ({"chunk": 0}, True),
        "chunked": ({}, True),
        "eager, sized by batch": ({}, False),
    },
    "loudness": {
        "unchunked": ({"time_chunk": 0}, True),
        "chunked": ({}, True),
        "eager, sized by batch": ({}, False),
    },
    "image_quality": {
        "whole batch (`working_set: 0`), eager": ({"working_set": 0}, False),
        "whole batch, traced": ({}, True),
        "eager, sized by batch": ({}, False),
    },
}
ANALYZERS: dict[str, tuple[type[Encoder], Any]] = {
    "flash": (FlashAnalyzer, FlashSettings()),
    "loudness": (LoudnessAnalyzer, LoudnessSettings()),
    "image_quality": (ImageQualityAnalyzer, QualitySettings()),
}


def build(name: str, overrides: dict[str, Any]) -> Encoder:
    cls, settings = ANALYZERS[name]
    return cls(dataclasses.replace(settings, **overrides)).eval()


def timed(fn: Any, *inputs: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn(*inputs)
    return time.perf_counter() - start, out


def sweep(name: str, batches: list[int], rounds: int) -> dict[str, Any]:
    """Best seconds per call of each variant at each batch size, and whether they agree."""
    graphs: dict[str, Any] = {}
    for variant, (overrides, traced) in VARIANTS[name].items():
        module = build(name, overrides)
        graphs[variant] = module
        if traced:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graphs[variant] = torch.jit.trace(
                    module, module.example_inputs(2), check_trace=False
                )
    example = build(name, {})
    torch.manual_seed(0)
    inputs = {b: example.example_inputs(b) for b in batches}
    seconds = {v: {b: float("inf") for b in batches} for v in graphs}
    same = {b: True for b in batches}
    with torch.no_grad():
        for graph in graphs.values():
            graph(*inputs[batches[0]])  # warm-up: the profiling runs of the executor
            graph(*inputs[batches[0]])
        for _ in range(rounds):
            for b in batches:
                outs = []
                for variant, graph in graphs.items():
                    elapsed, out = timed(graph, *inputs[b])
                    seconds[variant][b] = min(seconds[variant][b], elapsed)
                    outs.append(out)
                same[b] = same[b] and all(torch.equal(outs[0], out) for out in outs[1:])
    return {"seconds": seconds, "same": same}


def area_costs(rounds: int, sides: list[int]) -> dict[str, Any]:
    """Flash graph ms per item at batch 1 by grid size, and preparation ms per frame."""
    graph_ms = {}
    for side in sides:
        module = FlashAnalyzer(FlashSettings(grid_rows=side, grid_cols=side)).eval()
        torch.manual_seed(0)
        inputs = module.example_inputs(1)
        with torch.no_grad():
            module(*inputs)
            graph_ms[side] = 1000 * min(timed(module, *inputs)[0] for _ in range(rounds))
    fps, count, (width, height) = 30, 90, (640, 360)
    with tempfile.TemporaryDirectory() as tmp:
        path = samples.write_video(
            Path(tmp) / "clip.mp4",
            samples.flashing_frames(width, height, fps=fps, hz=4, area=0.5),
            frames=count,
            fps=fps,
        )
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
    settings, lut = FlashSettings(), srgb_to_linear()
    preparer = FlashPreparer(settings)
    prepare_s, shares_s = float("inf"), float("inf")
    for _ in range(rounds):
        sink = preparer.start(VideoInfo(fps, count, width, height))
        elapsed = time.perf_counter()
        for frame in frames:
            sink.add(frame)
        prepare_s = min(prepare_s, time.perf_counter() - elapsed)
        planes = [luminance_and_red(f.to_ndarray(format="rgb24"), lut)[0] for f in frames]
        cells = [cell_means(p, settings.grid_rows, settings.grid_cols) for p in planes]
        elapsed = time.perf_counter()
        for i in range(1, count):
            taking_part(planes[i] - planes[i - 1], cells[i] - cells[i - 1], 0.01)
        shares_s = min(shares_s, time.perf_counter() - elapsed)
    return {
        "graph_ms_batch_1": graph_ms,
        "prepare_ms_per_frame": 1000 * prepare_s / count,
        "shares_ms_per_frame": 1000 * shares_s / (count - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,16,32")
    parser.add_argument("--analyzers", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per cell (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--grids", default="16,32,64", help="flash grid sides priced; '' skips")
    parser.add_argument("--json", default="analyzer_batch", help="results/NAME.md and NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    report = Report("analyzer_batch", args.json)
    records: dict[str, Any] = {}
    rows = []
    for name in args.analyzers.split(","):
        records[name] = sweep(name, batches, args.rounds)
        for variant, seconds in records[name]["seconds"].items():
            rate = [b / seconds[b] for b in batches]
            same = all(records[name]["same"].values())
            rows.append([name, variant, *rate, rate[-1] / rate[0], "yes" if same else "NO"])
    header = ("analyzer", "variant", *(f"items/s at {b}" for b in batches))
    report.print(
        f"Analyzers (traced; eager where said), default 60 s inputs, torch threads {args.threads}, best of "
        f"{args.rounds} rounds:\n\n"
        + markdown_table((*header, f"{batches[-1]} / {batches[0]}", "same"), rows)
        + "\n"
    )
    if not args.grids:
        report.save(records)
        return
    costs = area_costs(args.rounds, [int(side) for side in args.grids.split(",")])
    graph = costs["graph_ms_batch_1"]
    first = next(iter(graph))
    report.print(
        "Flash area rule: graph ms per item at batch 1 by grid (chunked), preparation of a "
        "640x360 frame:\n\n"
        + markdown_table(
            ("grid", "graph ms / item", f"vs {first}x{first}"),
            [[f"{s}x{s}", ms, ms / graph[first]] for s, ms in graph.items()],
        )
        + "\n\n"
        + markdown_table(
            ("preparation ms / frame", "of which the shares taking part (luminance)"),
            [[costs["prepare_ms_per_frame"], costs["shares_ms_per_frame"]]],
        )
    )
    records["area_costs"] = costs
    report.save(records)


if __name__ == "__main__":
    main()
