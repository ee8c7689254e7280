"""What every benchmark prints and writes: the machine line, percentiles, Markdown tables, JSON.

Benchmarks are scripts, never timed tests: they print tables (Markdown, so that the README can
hold them as printed) and write the same numbers as JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else (platform.processor() or platform.machine())


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare a table with theirs (taken when called)."""
    facts: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def machine_line(facts: dict[str, Any] | None = None) -> str:
    """``machine()``, or the recorded ``facts`` of one, as one line for the top of a table."""
    m = facts or machine()
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ""
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    return (
        f"{m['date']}  {m['cpu']}, {m['cpus']} cores{gpu}, torch {m['torch']} "
        f"({m['torch_threads']} threads, {m['cpu_capability']}), load average {load}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (``q`` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers right-aligned, floats with 3 significant digits or 1 decimal."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """What a benchmark prints, kept for ``benchmarks/results/NAME.md``.

    The exact command and the machine line come first; :meth:`save` writes the printed text
    and the JSON payload side by side.

    Args:
        name: The benchmark's module name under ``benchmarks`` (also the results' file name).
        results: Another file name for the results (one benchmark, several runs kept).
    """

    def __init__(self, name: str, results: str | None = None) -> None:
        self.name = results or name
        self.command = shlex.join(["python", "-m", f"benchmarks.{name}", *sys.argv[1:]])
        self.lines: list[str] = []
        self.print(f"`{self.command}`\n\n{machine_line()}\n")

    def print(self, text: str = "") -> None:
        """Print ``text`` now and keep it for the Markdown file."""
        print(text, flush=True)
        self.lines.append(text)

    def save(self, payload: dict[str, Any]) -> Path:
        """Write ``NAME.md`` (the printed text) and ``NAME.json`` (``payload``, the command and
        the machine) under ``benchmarks/results/``; returns the JSON's path."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.name}.md").write_text("\n".join(self.lines) + "\n")
        path = RESULTS / f"{self.name}.json"
        record = {"machine": machine(), "command": self.command, **payload}
        path.write_text(json.dumps(record, indent=2) + "\n")
        return path


def start(name: str, threads: int) -> Report:
    """A benchmark's start: INFO logging, ``threads`` torch threads, its :class:`Report`."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(threads)
    return Report(name)


def verdict(measured: float, target: float) -> str:
    """``"met"``, or by how much a ratio goal (``measured >= target``) was missed."""
    if measured >= target:
        return "met"
    return f"missed by {target - measured:.2f} ({100 * (1 - measured / target):.0f} % short)"


GOALS_HEADER = ("goal", "measured", "target", "verdict")


def goal_row(goal: str, measured: float, target: float) -> list[Any]:
    """A row of a goals table (``GOALS_HEADER``) for a ratio goal ``measured >= target``."""
    return [goal, measured, target, verdict(measured, target)]


def best(
    fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Fastest of ``repeat`` runs of ``fn``, seconds of ``clock`` (wall time by default;
    ``time.thread_time`` counts only this thread's CPU, what other jobs change least)."""
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA), so that a wall-clock timer times it."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
