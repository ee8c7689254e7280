"""``adpolicy explain``: why each ad of a file got its scores (``ensemble.explain``).

Each ad is scored as ``adpolicy score`` scores it and its row gains an ``explanation``: the
per-modality breakdown of every policy, word attributions (text), an occlusion map (image),
flashes per second (video) and loudness per second (audio). Rows go to a JSON Lines file
(``-o``; standard output without ``-o`` or ``--html``); ``--html`` writes one self-contained
page. A bad ad gets its error row and the others go on.

Exit status: 0 every ad explained; 3 some rows are errors; 4 nothing could be explained (the
model, the ads file or the output cannot be opened), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from ensemble.cli.score import EXIT_AD_ERRORS, EXIT_FATAL, add_ads_arguments
from ensemble.explain import Explained, Explainer, ExplainSettings
from ensemble.explain_report import render_report
from ensemble.reader import check_ads_file, read_ads
from ensemble.scoring import Scorer, load
from ensemble.writers import check_not_input
from export.artifact import MANIFEST_FILE, load_artifact


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="explain the scores of a file of ads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ads_arguments(p)
    p.add_argument("-o", "--output", help="explained rows (.jsonl)")
    p.add_argument("--html", help="the report page (.html)")
    p.add_argument(
        "--model",
        help="checkpoint directory or export artifact (default: the embedded default model)",
    )
    p.add_argument("--grid", type=int, default=7, help="cells per side of the image map")
    p.add_argument("--occluder", choices=("blur", "mean"), default="blur")
    p.set_defaults(func=_explain)


def scorer_for(model: str | None, **options: Any) -> Scorer:
    """A scorer for a checkpoint directory, an export artifact (its traced graph) or, without
    one, the embedded default model."""
    if model is not None and (Path(model) / MANIFEST_FILE).is_file():
        device = options.pop("device", "cpu")
        return load_artifact(model, device=device).scorer(
            allow_paths=True, device=device, **options
        )
    return load(model, **options)


def _explain(args: argparse.Namespace) -> int:
    if args.output is not None and not args.output.endswith(".jsonl"):
        print(
            f"adpolicy explain: {args.output}: explanations are written as .jsonl", file=sys.stderr
        )
        return EXIT_FATAL
    try:
        check_ads_file(args.ads)
        for path in (args.output, args.html):
            if path is not None:
                check_not_input(args.ads, path)
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        scorer = scorer_for(
            args.model,
            device=args.device,
            batch_size=args.batch_size,
            any_path=args.allow_any_path,
        )
        explainer = Explainer(scorer, ExplainSettings(grid=args.grid, occluder=args.occluder))
        with ExitStack() as stack:
            out: IO[str] | None = sys.stdout
            if args.output is not None:
                out = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))
            elif args.html is not None:
                out = None
            records = read_ads(args.ads, limits=scorer.config.limits)
            explained = explainer.iter_explained(records, base_dir=Path(args.ads).parent)
            total = errors = 0
            kept: list[Explained] = []  # for the page only: it holds the decoded images
            for item in _written(explained, out):
                total += 1
                errors += item.row["status"] != "ok"
                if args.html is not None:
                    kept.append(item)
    except (OSError, ValueError) as err:
        print(f"adpolicy explain: {err}", file=sys.stderr)
        return EXIT_FATAL
    if args.html is not None:
        Path(args.html).write_text(render_report(kept, f"Explanations: {args.ads}"))
    print(
        f"{total} ads, {total - errors} explained, {errors} errors"
        + "".join(f"; {kind} written to {path}" for kind, path in _written_to(args)),
        file=sys.stderr,
    )
    return EXIT_AD_ERRORS if errors else 0


def _written(explained: Iterator[Explained], out: IO[str] | None) -> Iterator[Explained]:
    """Each explained ad written as one JSON line to ``out`` as it comes."""
    for item in explained:
        if out is not None:
            out.write(json.dumps(item.row, ensure_ascii=False) + "\n")
            out.flush()
        yield item


def _written_to(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(kind, path) for kind, path in (("rows", args.output), ("report", args.html)) if path]
