"""``adpolicy monitor baseline`` and ``adpolicy monitor report``.

Exit status of ``report``: 0 no violation, 1 at least one violation (so a scheduled job can
alert), 2 unusable input (no baseline, no capture records, a bad threshold).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ensemble.cli.score import positive
from serve.monitor.drift import DEFAULT_BINS, DEFAULT_SAMPLE_SIZE

log = logging.getLogger(__name__)

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT, EXIT_UNJUDGED = 0, 1, 2, 3


def register(sub: Any) -> None:
    monitor = sub.add_parser("monitor", help="drift and quality monitoring of a deployed model")
    commands = monitor.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")

    b = commands.add_parser("baseline", help="score validation data and record its baseline")
    b.add_argument("--data", required=True, help="JSONL of ads (with `labels` for F1 baselines)")
    b.add_argument("--model", help="checkpoint or export artifact directory (default: embedded)")
    b.add_argument("-o", "--output", help="baseline JSON file to write")
    b.add_argument(
        "--attach", action="store_true", help="also store it in the --model artifact's manifest"
    )
    b.add_argument("--batch-size", type=int, default=16)
    b.add_argument("--bins", type=_bins, default=DEFAULT_BINS, help="bins per distribution (>= 2)")
    b.add_argument(
        "--sample-size", type=positive, default=DEFAULT_SAMPLE_SIZE, help="values kept for KS tests"
    )
    b.set_defaults(func=_baseline)

    r = commands.add_parser("report", help="compare captured traffic with a baseline")
    r.add_argument(
        "--baseline", required=True, help="baseline.json, or an artifact (dir or manifest.json)"
    )
    r.add_argument(
        "--capture", required=True, help="capture file (its rotated backups are read too) or dir"
    )
    r.add_argument("--labels", help="JSONL of {id, labels: {policy: 0|1}} for production ads")
    r.add_argument("--model", help="only records of this model: NAME or NAME:VERSION")
    r.add_argument("--since", type=_moment, help="only records at or after this ISO 8601 time")
    r.add_argument("--until", type=_moment, help="only records before this ISO 8601 time")
    r.add_argument("-o", "--output", required=True, help="report directory")
    r.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a threshold, e.g. psi=0.25 or min_samples=50 (repeatable)",
    )
    r.set_defaults(func=_report)


def _moment(value: str) -> datetime:
    """An ISO 8601 time; without an offset it is taken as UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _baseline(args: argparse.Namespace) -> int:
    from serve.monitor.baseline import attach_baseline, build_baseline

    if not args.output and not args.attach:
        log.error("give -o FILE, --attach, or both")
        return EXIT_BAD_INPUT
    if args.attach and not args.model:
        log.error("--attach stores the baseline in an export artifact: give it with --model")
        return EXIT_BAD_INPUT
    try:
        baseline = build_baseline(
            args.model,
            args.data,
            batch_size=args.batch_size,
            bins=args.bins,
            sample_size=args.sample_size,
        )
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(baseline, indent=1) + "\n")
            print(f"baseline written to {args.output}")
        if args.attach:
            print(f"baseline stored in {attach_baseline(args.model, baseline)}")
    except (OSError, ValueError) as err:  # an unreadable data file, model or output
        log.error("%s", err)
        return EXIT_BAD_INPUT
    print(
        f"{baseline['scored']} ads scored ({baseline['errors']} errors); policies: "
        f"{', '.join(baseline['policies']) or 'none scored'}; inputs: {', '.join(baseline['inputs'])}"
    )
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from serve.capture import read_capture
    from serve.monitor.baseline import load_baseline
    from serve.monitor.html import render_html
    from serve.monitor.observe import Observations, select
    from serve.monitor.quality import read_labels
    from serve.monitor.report import Thresholds, compare

    try:
        thresholds = Thresholds().with_overrides(args.threshold)
        baseline = load_baseline(args.baseline)
        records = select(
            read_capture(args.capture), model=args.model, since=args.since, until=args.until
        )
        obs = Observations.from_records(records)
        labels = read_labels(args.labels) if args.labels else None
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return EXIT_BAD_INPUT
    if obs.records == 0:
        log.error("no capture records in %s match the filters", args.capture)
        return EXIT_BAD_INPUT
    report = compare(baseline, obs, thresholds=thresholds, labels=labels)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "violations.json").write_text(json.dumps(report["violations"], indent=1) + "\n")
    (out / "report.html").write_text(render_html(report))
    print(
        f"{obs.records} records ({obs.errors} errors) against a baseline of {baseline['records']}"
    )
    for note in report["notes"]:
        print(f"note: {note}")
    for violation in report["violations"]:
        print(f"VIOLATION {violation['message']}")
    print(f"{len(report['violations'])} violation(s); report in {out / 'report.html'}")
    if report["violations"]:
        return EXIT_VIOLATION
    return EXIT_OK if report["judged"] else EXIT_UNJUDGED


def _bins(text: str) -> int:
    """An argparse type: at least 2 bins (one bin holds everything: PSI and JS never move)."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value
