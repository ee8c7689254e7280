"""``adpolicy score``: offline scoring of a file of ads, streamed to a results file.

Exit status: 0 every ad scored; 3 (``EXIT_AD_ERRORS``) the run finished and every ad has a
row, but some rows are errors; 4 (``EXIT_FATAL``) nothing could be scored (the model, the ads
file or the output cannot be opened), with the reason on stderr. (1 is left to Python's
uncaught exceptions, 2 to argparse's usage errors.)
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ensemble.scoring import SORT_WINDOW, load
from ensemble.summary import Summary
from ensemble.writers import FORMATS

EXIT_AD_ERRORS = 3
EXIT_FATAL = 4


def register(sub: Any) -> None:
    p = sub.add_parser(
        "score",
        help="score a file of ads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ads_arguments(p)
    p.add_argument("-o", "--output", required=True, help=f"results file ({', '.join(FORMATS)})")
    p.add_argument("--model", help="checkpoint directory (default: the embedded default model)")
    p.add_argument(
        "--sort-window",
        type=int,
        default=SORT_WINDOW,
        help="batches read ahead and sorted by length bucket (1: batch ads as they come)",
    )
    p.add_argument(
        "--resume", action="store_true", help="skip the ids already in the output; append"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group = p.add_argument_group(
        "Ray engine (pip install adpolicy-ensemble[ray])",
        "--engine ray scores on Ray Data: OUT is a directory (suffix .jsonl or .parquet) of "
        "one part-NNNNNN file per block; ADS may be an s3://, gs://, hdfs:// URI",
    )
    group.add_argument("--engine", choices=("local", "ray"), default="local")
    group.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    group.add_argument("--actors", type=positive, default=1, help="actors, each holding the model")
    group.add_argument("--threads-per-actor", type=positive, default=1, help="CPUs of each actor")
    group.add_argument("--num-gpus-per-actor", type=float, default=0, help="GPUs of each actor")
    group.add_argument(
        "--ads-per-block", type=positive, default=512, help="ads per block (unit of work)"
    )
    p.set_defaults(func=_score)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def rate(text: str) -> float:
    """An argparse type: a learning rate, a finite number of at least 0 (a negative one
    would climb the loss)."""
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


def add_ads_arguments(p: argparse.ArgumentParser) -> None:
    """The options of every command that scores a file of ads: the file, batch size, device
    and where media paths may point."""
    p.add_argument(
        "ads", help="JSONL, JSON, CSV or Parquet file (.gz/.zst too); media paths relative to it"
    )
    p.add_argument("--batch-size", type=positive, default=8, help="ads per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--allow-any-path",
        action="store_true",
        help="accept media paths outside the folder of the ads file",
    )


def _score(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    on_ray = args.engine == "ray"
    if on_ray and (args.resume or args.device != "cpu"):
        print(
            "adpolicy score: --engine ray writes a fresh directory (no --resume) and picks its "
            "device from --num-gpus-per-actor (no --device)",
            file=sys.stderr,
        )
        return EXIT_FATAL
    try:
        summary = _score_on_ray(args) if on_ray else _score_here(args)
    except (OSError, ValueError) as err:
        print(f"adpolicy score: {err}", file=sys.stderr)
        return EXIT_FATAL
    print(summary.table(time.perf_counter() - start))
    print(f"results written to {args.output}{'/part-*' if on_ray else ''}")
    return EXIT_AD_ERRORS if summary.errors else 0


def _score_here(args: argparse.Namespace) -> Summary:
    scorer = load(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        sort_window=args.sort_window,
        any_path=args.allow_any_path,
    )
    return scorer.score_file_to(
        args.ads, args.output, resume=args.resume, progress=not args.no_progress
    )


def _score_on_ray(args: argparse.Namespace) -> Summary:
    from ensemble.distributed import score_to

    return score_to(
        args.ads,
        args.output,
        address=args.address,
        progress=not args.no_progress,
        model=args.model,
        actors=args.actors,
        threads_per_actor=args.threads_per_actor,
        num_gpus_per_actor=args.num_gpus_per_actor,
        batch_size=args.batch_size,
        sort_window=args.sort_window,
        ads_per_block=args.ads_per_block,
        any_path=args.allow_any_path,
    )
