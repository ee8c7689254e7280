"""The batch sweep's knee and the goals' verdicts, on made-up numbers (nothing timed)."""

from __future__ import annotations

from benchmarks.common import goal_row
from benchmarks.export_bench import knee


def test_knee_is_the_first_batch_that_adds_little_throughput_but_latency() -> None:
    batches = [1, 2, 4, 8, 16]
    items_per_s = [10.0, 19.0, 30.0, 32.0, 33.0]  # x1.9, x1.6, x1.07 (the knee), x1.03
    p50 = [0.1, 0.105, 0.133, 0.25, 0.48]
    assert knee(batches, items_per_s, p50) == 3


def test_no_knee_while_throughput_grows_or_latency_falls() -> None:
    assert knee([1, 2, 4], [10.0, 20.0, 40.0], [0.1, 0.1, 0.1]) is None
    assert knee([1, 2], [10.0, 10.5], [0.1, 0.09]) is None


def test_goal_rows_say_by_how_much_a_goal_is_missed() -> None:
    assert goal_row("bf16", 1.6, 1.5)[-1] == "met"
    assert goal_row("bf16", 1.2, 1.5)[-1].startswith("missed by 0.30")
