"""``adpolicy export``: a checkpoint to an artifact (one graph + manifest), or an operator check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ensemble.scoring import DEFAULT_DIR
from export.calibration import random_batch
from export.exporter import TARGETS, ExportOptions, export_checkpoint, load_model
from export.neuron import NeuronSDKError
from export.opcheck import SUPPORTED_LISTS, check_operators
from export.precision import CAST_METHODS, PRECISIONS, ParityGate, PrecisionError
from export.trace import PARITY_BATCH_SIZES, TRACE_BATCH_SIZE, ParityError, trace_graph


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="trace a checkpoint into one graph + manifest (TorchScript, Neuron, torch.export)",
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        default=str(DEFAULT_DIR),
        help="checkpoint directory (default: the embedded default model), or a model config "
        "(e.g. 'full': untrained heads, for operator checks and benchmarks)",
    )
    p.add_argument("-o", "--output", help="artifact directory to write")
    p.add_argument(
        "--target",
        choices=TARGETS,
        default="torchscript",
        help="torchscript (CPU/GPU), neuron (Inf1), neuronx (Inf2/Trn), torch-export (AOT .pt2)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="16-bit encoders only after a parity check against fp32; auto falls back",
    )
    p.add_argument(
        "--cast-method",
        choices=CAST_METHODS,
        default="weights",
        help="16-bit encoders by converted weights (faster here) or autocast in the graph",
    )
    p.add_argument("--calibration", type=Path, help="JSONL file of ads for the parity checks")
    p.add_argument(
        "--batch-sizes",
        default=",".join(map(str, PARITY_BATCH_SIZES)),
        help="batch sizes of the traced-vs-eager check (comma separated)",
    )
    p.add_argument(
        "--max-score-diff",
        type=float,
        default=ParityGate.max_score_diff,
        help="16-bit accepted only if no score moves more than this vs fp32",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=ParityGate.min_agreement,
        help="... and every policy's flag agrees with fp32 on at least this fraction of ads",
    )
    p.add_argument(
        "--no-neuron-fallback",
        action="store_true",
        help="Inf1: fail instead of running unsupported operators on the CPU",
    )
    p.add_argument(
        "--check-neuron",
        action="store_true",
        help="list the graph's operators outside Neuron's supported lists (no SDK needed)",
    )
    p.add_argument(
        "--graph-per-bucket",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one graph per length bucket (default: only for neuron / neuronx, whose "
        "compilers fix every shape; a TorchScript trace keeps lengths free)",
    )
    p.add_argument("--json", action="store_true", help="print the operator check as JSON")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    if not args.check_neuron and not args.output:
        raise SystemExit("adpolicy export: give -o ARTIFACT_DIR, --check-neuron, or both")
    if args.check_neuron:
        _check_neuron(args.checkpoint, as_json=args.json)
    if args.output:
        options = ExportOptions(
            target=args.target,
            precision=args.precision,
            cast_method=args.cast_method,
            calibration=args.calibration,
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
            gate=ParityGate(args.max_score_diff, args.min_agreement),
            neuron_fallback=not args.no_neuron_fallback,
            graph_per_bucket=args.graph_per_bucket,
        )
        try:
            out = export_checkpoint(args.checkpoint, args.output, options)
        except (NeuronSDKError, PrecisionError, ParityError) as err:
            print(f"adpolicy export: {err}", file=sys.stderr)
            return 2
        manifest = json.loads((out / "manifest.json").read_text())
        print(
            f"{out}: {manifest['target']} graph {manifest['graph']['file']}, "
            f"precision {manifest['precision']['dtype']} ({manifest['precision']['reason']}), "
            f"parity max abs diff {manifest['parity']['max_abs_diff']:.3g}"
        )
    return 0


def _check_neuron(checkpoint: str, *, as_json: bool) -> None:
    model = load_model(checkpoint)
    graph = trace_graph(model, random_batch(model.example_inputs, TRACE_BATCH_SIZE, seed=0))
    reports = [check_operators(graph, target) for target in SUPPORTED_LISTS]
    if as_json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        print("\n\n".join(r.format() for r in reports))
