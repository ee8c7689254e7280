"""Length buckets on mixed traffic: every modality, before and after, in one run.

The realistic traffic set of :mod:`benchmarks.traffic_set` (text like tweets and ad copy; 30 %
of ads with an image, 30 % with 5-30 s audio, 10 % with 5-30 s video) is scored by the embedded
default model (eager) two ways:

- ``padded``: the behaviour before buckets: text padded to 128 tokens, audio and video to their
  60 s (``buckets: [128]`` for text, ``[]`` for the loudness and flash analyzers), batches cut in
  input order;
- ``bucketed``: the default: each batch padded to the smallest bucket of each input that holds
  its longest item, ``--window`` batches sorted by bucket before they are cut.

Each mode prepares (decodes) the ads once; the preparation's CPU time is reported apart (the
decoding is the same work in both). What buckets change is the batch: collation and the forward,
timed in CPU seconds of this process with one torch thread (``time.process_time``), so other
jobs on a shared machine change them little. Items/s is per CPU-second. Then the same per
modality (ads cut down to their text, image, audio or video alone), the knee of each, and parity
of every score and measurement between the modes. A last row, derived from the modality rows,
is the mixed set run one modality at a time (each ad's modalities in passes of their own): the
ads over the modality rows' summed seconds.

    python -m benchmarks.traffic_set runs/traffic --ads 240
    python -m benchmarks.mixed runs/traffic [--ads 240] [--batches 1,4,8,16,32] [--window 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import GOALS_HEADER, goal_row, markdown_table, start
from encoders.base import MODALITIES
from ensemble.batch import AdPreparer, PreparedAd
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import from_pretrained
from ensemble.scoring import DEFAULT_DIR, Scorer

log = logging.getLogger("benchmarks.mixed")
MODES = ("padded", "bucketed")


def padded_config(config: ModelConfig) -> tuple[ModelConfig, dict[str, dict[str, Any]]]:
    """The config and preparation overrides of the behaviour before buckets."""
    data = config.to_json()
    data["encoders"]["text"]["buckets"] = [data["encoders"]["text"].get("max_length", 128)]
    overrides: dict[str, dict[str, Any]] = {
        key: {"buckets": []}
        for key, enc in data["encoders"].items()
        if key != "text" and "buckets" in enc
    }
    return ModelConfig.from_json(data), overrides


def scorer_for(model: AdPolicyEnsemble, mode: str, batch: int, window: int) -> Scorer:
    config, overrides = (
        padded_config(model.config) if mode == "padded" else (model.config, {})
    )  # fmt: skip
    return Scorer(
        model,
        batch_size=batch,
        sort_window=window if mode == "bucketed" else 1,
        preparer=AdPreparer(config, allow_paths=True, overrides=overrides),
        workers=1,
    )


def prepare(scorer: Scorer, ads: Sequence[dict[str, Any]], base: Path) -> list[PreparedAd]:
    return [scorer.preparer.prepare(ad, base_dir=base) for ad in ads]


def timed_scores(
    scorer: Scorer, prepared: Sequence[PreparedAd], batch: int
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """CPU seconds to collate and run ``prepared`` in windows of ``batch * sort_window``, as
    :meth:`Scorer.iter_scored` cuts them; the raw scores and measurements in input order."""
    window = batch * scorer.sort_window
    start = time.process_time()
    scored = []
    for i in range(0, len(prepared), window):
        scored += scorer.score_by_bucket(prepared[i : i + window], batch_size=batch)
    seconds = time.process_time() - start
    names = scorer.formatter.measurement_names
    table = torch.tensor(
        [[s.row.get("measurements", {}).get(n, float("nan")) for n in names] for s in scored]
    )
    scores = [s.scores for s in scored if s.scores is not None]
    if len(scores) < len(scored):
        raise SystemExit("an ad failed to score: see the log")
    return seconds, torch.stack(scores), table


def only(ads: Sequence[dict[str, Any]], modality: str) -> list[dict[str, Any]]:
    """The ads that have ``modality``, cut down to it."""
    return [{"id": a["id"], modality: a[modality]} for a in ads if a.get(modality)]


def sweep(
    model: AdPolicyEnsemble,
    ads: Sequence[dict[str, Any]],
    base: Path,
    batches: Sequence[int],
    window: int,
) -> dict[str, Any]:
    """Items/s per mode and batch size; preparation seconds per mode; the last scores."""
    prepared: dict[str, list[PreparedAd]] = {}
    prep_s: dict[str, float] = {}
    rates: dict[str, dict[int, float]] = {}
    outs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for mode in MODES:
        scorer = scorer_for(model, mode, batches[0], window)
        start = time.process_time()
        prepared[mode] = prepare(scorer, ads, base)
        prep_s[mode] = time.process_time() - start
        timed_scores(scorer, prepared[mode][: min(8, len(ads))], 4)  # first calls allocate
    for batch in batches:
        for mode in MODES:  # alternating: both modes see the same machine load
            scorer = scorer_for(model, mode, batch, window)
            seconds, scores, measures = timed_scores(scorer, prepared[mode], batch)
            rates.setdefault(mode, {})[batch] = len(ads) / seconds
            outs[mode] = (scores, measures)
    return {"rates": rates, "prepare_s": prep_s, "outs": outs, "n": len(ads)}


def parity(
    outs: dict[str, tuple[torch.Tensor, torch.Tensor]], model: AdPolicyEnsemble
) -> dict[str, float | int]:
    """How far the bucketed scores and measurements are from the padded ones."""
    (s_pad, m_pad), (s_ours, m_ours) = outs["padded"], outs["bucketed"]
    assert model.config is not None
    thresholds = torch.tensor([p.threshold for p in model.config.policies])
    known = ~(s_pad.isnan() | s_ours.isnan())
    return {
        "max_abs_score_diff": largest((s_pad - s_ours)[known]),
        "decisions_differing": int(((s_pad >= thresholds) != (s_ours >= thresholds)).sum()),
        "max_abs_measurement_diff": largest((m_pad - m_ours).nan_to_num(0.0)),
    }


def largest(diff: torch.Tensor) -> float:
    """The largest absolute value of ``diff`` (0 when it is empty)."""
    return float(diff.abs().max()) if diff.numel() else 0.0


def knee(rates: dict[int, float]) -> tuple[int, bool]:
    """The batch of the best rate, and whether the rate never falls (by > 5 %) up to it."""
    best = max(rates, key=rates.__getitem__)
    steps = [(a, b) for a, b in pairwise(sorted(rates)) if b <= best]
    return best, all(rates[b] >= 0.95 * rates[a] for a, b in steps)


def one_modality_at_a_time(
    results: dict[str, dict[str, Any]], n: int
) -> dict[str, dict[int, float]]:
    """Items/s per mode and batch of ``n`` mixed ads whose modalities each ran in passes of
    their own: ``n`` over the summed seconds of the modality sets (the same ads, cut down)."""
    parts = [results[m] for m in MODALITIES if m in results]
    return {
        mode: {
            b: n / sum(p["n"] / p["rates"][mode][b] for p in parts) for b in parts[0]["rates"][mode]
        }
        for mode in MODES
    }


def summary(rates: dict[str, dict[int, float]], batches: Sequence[int]) -> dict[str, Any]:
    """Best bucketed / best padded, the bucketed knee, whether it rose to it, knee / batch 1."""
    padded, bucketed = rates["padded"], rates["bucketed"]
    at, rising = knee(bucketed)
    return {
        "best_ratio": max(bucketed.values()) / max(padded.values()), "knee": at,
        "rising_to_knee": rising, "knee_ratio": bucketed[at] / bucketed[batches[0]],
    }  # fmt: skip


def rate_row(
    name: str, n: int, rates: dict[str, dict[int, float]], batches: Sequence[int], prep: Any
) -> list[Any]:
    """A row of the items/s table: padded / bucketed per batch, then :func:`summary`."""
    padded, bucketed = rates["padded"], rates["bucketed"]
    cells = (f"{padded[b]:.1f} / {bucketed[b]:.1f}" for b in batches)
    return [name, n, *cells, *summary(rates, batches).values(), prep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traffic", type=Path, help="folder written by benchmarks.traffic_set")
    parser.add_argument("--ads", type=int, default=240, help="ads of the set used")
    parser.add_argument("--batches", default="1,4,8,16,32")
    parser.add_argument("--window", type=int, default=8, help="sort window (batches)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a server worker)")
    args = parser.parse_args()
    report = start("mixed", args.threads)
    model = from_pretrained(DEFAULT_DIR).eval()
    ads = [json.loads(line) for line in (args.traffic / "ads.jsonl").read_text().splitlines()]
    ads = ads[: args.ads]
    batches = [int(b) for b in args.batches.split(",")]
    sets: dict[str, list[dict[str, Any]]] = {"mixed": ads}
    sets.update({m: only(ads, m) for m in MODALITIES})
    results: dict[str, dict[str, Any]] = {}
    for name, subset in sets.items():
        if subset:
            results[name] = sweep(model, subset, args.traffic, batches, args.window)
            log.info("%s: %s", name, results[name]["rates"])

    rows, goals, payload = [], [], {}
    for name, r in results.items():
        prep_ms = r["prepare_s"]["bucketed"] / r["n"] * 1000
        rows.append(rate_row(name, r["n"], r["rates"], batches, prep_ms))
        payload[name] = {
            "n": r["n"], **r["rates"], "prepare_s": r["prepare_s"],
            **summary(r["rates"], batches), **parity(r["outs"], model),
        }  # fmt: skip
    apart = {}
    if "mixed" in results and len(results) > 2:
        apart = one_modality_at_a_time(results, results["mixed"]["n"])
        rows.append(rate_row("mixed, one modality a pass", len(ads), apart, batches, "-"))
    report.print("## Collate + forward items per CPU-second (padded / bucketed)\n")
    header = ["set", "ads", *(f"batch {b}" for b in batches), "best ratio", "knee"]
    header += ["rising to knee", "knee / batch 1", "prepare ms/ad"]
    report.print(markdown_table(header, rows))
    report.print("\n## Parity: bucketed vs padded, every score and measurement\n")
    equal = [
        [k, v["max_abs_score_diff"], v["decisions_differing"], v["max_abs_measurement_diff"]]
        for k, v in payload.items()
    ]
    header = ["set", "max |Δscore|", "decisions differing", "max |Δmeasurement|"]
    report.print(markdown_table(header, equal))
    if "mixed" in payload:
        mixed = payload["mixed"]
        goals.append(goal_row("mixed traffic, best batch vs padded", mixed["best_ratio"], 3.0))
        goals.append(goal_row("mixed knee vs batch 1", mixed["knee_ratio"], 2.0))
    report.print("\n## Goals\n")
    report.print(markdown_table(GOALS_HEADER, goals))
    falling = [k for k, v in payload.items() if not v["rising_to_knee"]]
    report.print(f"\nThroughput falling before the knee: {falling or 'none'}")
    args_out = vars(args) | {"traffic": str(args.traffic)}
    report.save({"args": args_out, "sets": payload, "one_modality_a_pass": apart})


if __name__ == "__main__":
    main()
