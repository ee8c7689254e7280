"""The ``adpolicy`` command line: one sub-command group per job.

The groups of the model's own jobs live here (:mod:`.score`, :mod:`.explain`, :mod:`.train`,
:mod:`.calibrate`); export, serving
and monitoring keep theirs beside the code they drive (``export.commands``, ``serve.commands``,
``serve.monitor.commands``). Each module exposes ``register(subparsers)``; its parsers set
``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import warnings
from collections.abc import Sequence

from ensemble.cli import calibrate, explain, score, train
from export import commands as export_commands
from serve import commands as serve_commands
from serve.monitor import commands as monitor_commands

COMMAND_GROUPS = (
    score,
    explain,
    train,
    calibrate,
    monitor_commands,
    export_commands,
    serve_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adpolicy", description="Score ad creatives against content policies."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


SIGPIPE_EXIT = 141  # as a shell reports a command its reader stopped reading (128 + SIGPIPE)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket or a child's pipe: a real error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return SIGPIPE_EXIT  # stdout closed early (`| head`): what was written stays written
    except (OSError, ValueError) as err:
        if args.verbose:
            raise
        # a missing file, a config naming an unknown encoder or setting, a checkpoint whose
        # weights do not fit it: one line, not a traceback; should it be a bug, -v shows where
        print(f"adpolicy {args.command}: {err} [adpolicy -v: the traceback]", file=sys.stderr)
        return score.EXIT_FATAL
    return code


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):  # no descriptor to poll: not a closed pipe
        return False


if __name__ == "__main__":
    sys.exit(main())
