"""``adpolicy score``: offline scoring of a JSONL file, with a summary table."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from ensemble.scoring import load
from ensemble.writers import FORMATS


def register(sub: Any) -> None:
    p = sub.add_parser("score", help="score a JSONL file of ads")
    p.add_argument("ads", help="JSONL file, one ad per line; media paths relative to it")
    p.add_argument("-o", "--output", help=f"results file ({', '.join(FORMATS)})")
    p.add_argument("--model", help="checkpoint directory (default: the embedded default model)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    scorer = load(args.model, device=args.device, batch_size=args.batch_size)
    start = time.perf_counter()
    results = scorer.score_file(args.ads, args.output, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    print(summary_table(results, scorer.policy_names, elapsed))
    if args.output:
        print(f"results written to {args.output}")
    return 0


def summary_table(
    results: Sequence[dict[str, Any]], policies: Sequence[str], seconds: float
) -> str:
    """Per ad the score of each policy it was scored on (``*``: flagged) or its errors, then
    per policy how many ads were scored and flagged."""
    lines = [f"{'ad':<24} {'status':<7} scores (* flagged) / errors"]
    for r in results:
        detail = (
            ", ".join(
                f"{name} {e['score']:.2f}{'*' if e['flag'] else ''}"
                for name, e in r["policies"].items()
                if e["status"] == "scored"
            )
            if r["status"] == "ok"
            else "; ".join(f"{e['field']}: {e['error']}" for e in r["errors"])
        )
        lines.append(f"{r['id']:<24} {r['status']:<7} {detail}")
    lines += ["", f"{'policy':<22} {'scored':>6} {'flagged':>7} {'max score':>9}  untrained  n/a"]
    ok = [r for r in results if r["status"] == "ok"]
    for name in policies:
        entries = [r["policies"][name] for r in ok]
        scored = [e for e in entries if e["status"] == "scored"]
        top = max((e["score"] for e in scored), default=None)
        lines.append(
            f"{name:<22} {len(scored):>6} {sum(e['flag'] for e in scored):>7} "
            f"{'-' if top is None else f'{top:.3f}':>9}  "
            f"{sum(e['status'] == 'untrained' for e in entries):>9} "
            f"{sum(e['status'] == 'not_applicable' for e in entries):>4}"
        )
    errors = len(results) - len(ok)
    rate = len(results) / seconds if seconds > 0 else 0.0
    lines.append(f"\n{len(results)} ads, {errors} with errors, {seconds:.1f} s ({rate:.1f} ads/s)")
    return "\n".join(lines)
