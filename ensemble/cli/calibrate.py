"""``adpolicy calibrate``: fit each policy's calibration and allow / review / block band on
labelled validation ads and store them in the checkpoint (see
:mod:`ensemble.training.decisions`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ensemble.cli.score import positive
from ensemble.training.calibrate import TargetError, Targets


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit calibrations and allow / review / block bands into a checkpoint",
        description=__doc__,
    )
    p.add_argument("checkpoint", help="checkpoint directory")
    p.add_argument("--data", required=True, help="labelled validation manifest (JSONL)")
    p.add_argument(
        "--block-precision", type=float, default=Targets.block_precision,
        help="target precision of automatic blocks",
    )  # fmt: skip
    p.add_argument(
        "--allow-miss-rate", type=float, default=Targets.allow_miss_rate,
        help="target share of violations among automatic approvals",
    )  # fmt: skip
    p.add_argument(
        "--delta", type=float, default=Targets.delta,
        help="allowed probability (over the calibration draw) that a target fails",
    )  # fmt: skip
    p.add_argument(
        "--start-errors", type=int, default=Targets.start_errors,
        help="errors each side's sequence of tests tolerates at its first test (0: the first "
        "threshold that could pass at all, where one noisy label ends the sequence)",
    )  # fmt: skip
    p.add_argument(
        "--class-rule",
        help="also set the flag thresholds of this rule's policies (e.g. three-class) to those "
        "maximising its macro-F1 averaged over the ads' meta.source",
    )
    p.add_argument("-o", "--out", help="write a calibrated copy here (default: in place)")
    p.add_argument("--json", help="also write the per-policy report here")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from ensemble.training.data import parse_class_rule
    from ensemble.training.decisions import calibrate_checkpoint, format_report

    try:  # before the slow scoring: a bad flag fails at once
        targets = Targets(args.block_precision, args.allow_miss_rate, args.delta, args.start_errors)
    except TargetError as error:
        raise SystemExit(f"--{error.field.replace('_', '-')} {error.problem}") from None
    rule = parse_class_rule(args.class_rule) if args.class_rule else None
    out, report = calibrate_checkpoint(
        args.checkpoint, args.data, targets, rule=rule, out=args.out, batch_size=args.batch_size,
        device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"decisions stored in {out}")
    return 0
