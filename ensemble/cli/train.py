"""``adpolicy data davidson|text-policies|text-sets|social-words``, ``adpolicy train``, ``adpolicy evaluate``,
``adpolicy text-check``, ``adpolicy tune``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from ensemble.cli.score import positive, rate
from ensemble.config import ModelConfig, load_config
from ensemble.pretrained import CONFIG_FILE, DELTA_STEPS
from ensemble.training.data import (
    CLASS_RULES,
    file_sha256,
    parse_class_rule,
    read_manifest,
    sample_positions,
)
from ensemble.training.davidson import convert_davidson
from ensemble.training.textcheck import SETS
from ensemble.training.train import (
    CLASS_WEIGHT_POWER,
    SCHEDULES,
    TrainSettings,
    init_distributed,
)

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path(os.environ.get("ADPOLICY_CACHE", Path.home() / ".cache" / "adpolicy"))
EVALUATION_FILE = "evaluation.json"
RECORD_SAMPLE = 256
STORED_DTYPES = ("float32", "float16", *DELTA_STEPS)
UNRECORDED = {"func", "cache_dir", "no_cache", "no_progress", "verbose"}  # no effect on weights


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="convert labelled data sets to manifests")
    data_sub = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    dav = data_sub.add_parser("davidson", help="Davidson et al. tweets -> train/val/test JSONL")
    dav.add_argument("csv", help="labeled_data.csv")
    dav.add_argument("--out", required=True, help="output directory")
    dav.add_argument(
        "--val-size", type=float, default=0.15, help="share of the 70 %% for validation"
    )
    dav.add_argument("--soft-labels", action="store_true", help="vote shares as training labels")
    dav.add_argument("--raw-text", action="store_true", help="keep the tweets uncleaned")
    dav.add_argument("--no-check", action="store_true", help="accept a CSV of another sha256")
    dav.set_defaults(func=_davidson)
    tp = data_sub.add_parser(
        "text-policies",
        help="Davidson (raw) + HateXplain (+ augmentation) + TOXIGEN -> text-policy JSONL",
    )
    tp.add_argument("--davidson", required=True, help="Davidson's labeled_data.csv")
    tp.add_argument("--hatexplain", required=True, help="folder of hatexplain.csv and its split")
    tp.add_argument("--out", required=True, help="output directory")
    tp.add_argument("--no-augment", action="store_true", help="no augmented training rows")
    tp.add_argument("--no-toxigen", action="store_true", help="no TOXIGEN sentences")
    tp.add_argument("--no-check", action="store_true", help="accept files of other sha256")
    tp.set_defaults(func=_text_policies)
    ts = data_sub.add_parser(
        "text-sets", help="generate the benign ad-copy, idiom ad-copy and behavioural sets"
    )
    ts.add_argument("--out", required=True, help="output directory")
    ts.set_defaults(func=_text_sets)
    sw = data_sub.add_parser(
        "social-words",
        help="the words social-v4's spelling repair leaves as written, from a training manifest",
    )
    sw.add_argument("train", help="training manifest (text-policies' train.jsonl)")
    sw.add_argument("--out", required=True, help="word list to write (encoders/data/...)")
    sw.set_defaults(func=_social_words)

    tc = sub.add_parser(
        "text-check", help="3-class, per-group and behavioural measurements of the text policies"
    )
    tc.add_argument("checkpoint", help="checkpoint directory")
    tc.add_argument(
        "--sets",
        nargs="+",
        required=True,
        help="folders holding the set manifests: " + ", ".join(SETS.values()),
    )
    tc.add_argument("--json", help="also write the report here")
    tc.set_defaults(func=_text_check)

    tr = sub.add_parser("train", help="train the heads (and optionally encoders)")
    _add_training_arguments(tr)
    tr.add_argument("--out", required=True, help="checkpoint directory")
    tr.add_argument(
        "--init", metavar="CHECKPOINT",
        help="start from this checkpoint's config and weights (continue fine-tuning); "
        "--config, --head-hidden and --head-dropout are then not read",
    )  # fmt: skip
    tr.add_argument("--heads-only", action="store_true", help="store only the heads' weights")
    tr.add_argument(
        "--update-rank", type=int, metavar="R",
        help="with --init of a heads checkpoint: train each fine-tuned matrix's change as a "
        "rank-R product (LoRA) and store --init's weights file unchanged plus those products "
        "and the heads (kilobytes, not another weights file; the stored model's validation "
        "scores are checked as for --weights-dtype)",
    )  # fmt: skip
    tr.add_argument(
        "--weights-dtype", choices=STORED_DTYPES, default="float32",
        help="store the weights in this type (float16: half the file; int8-delta, with "
        "--heads-only: the fine-tuned matrices as int8 steps from the base weights, a quarter; "
        "int7-delta: the same with half as many steps, smaller once compressed; "
        "the scores of the stored model are checked against the trained one's on the "
        "validation ads)",
    )  # fmt: skip
    tr.add_argument(
        "--unfreeze", nargs="+", default=[], metavar="KEY", help="encoders to fine-tune"
    )
    tr.add_argument("--encoder-lr", type=rate, default=TrainSettings.encoder_lr)
    tr.add_argument(
        "--branch-lr", type=rate, default=TrainSettings.branch_lr,
        help="learning rate of the frozen encoders' head-trained parts (the text lexicon)",
    )  # fmt: skip
    tr.add_argument("--lr", type=rate, default=TrainSettings.lr)
    tr.add_argument("--weight-decay", type=rate, default=TrainSettings.weight_decay)
    tr.add_argument("--batch-size", type=positive, default=TrainSettings.batch_size, help="global")
    tr.add_argument("--class-weight", choices=list(CLASS_WEIGHT_POWER), default="none")
    tr.add_argument(
        "--schedule", choices=list(SCHEDULES), default=TrainSettings.schedule,
        help="learning rates: constant, or linear decay to zero over --epochs",
    )  # fmt: skip
    tr.add_argument("--head-hidden", type=int, help="hidden width of the heads (0: linear)")
    tr.add_argument("--head-dropout", type=float, help="dropout of the heads")
    tr.add_argument(
        "--time-limit-s", type=float, help="stop training after this many seconds (one process)"
    )
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="metrics and a report of a checkpoint on labelled data")
    ev.add_argument("checkpoint", help="checkpoint directory")
    ev.add_argument("--data", required=True, help="labelled JSONL manifest")
    ev.add_argument("--report", help="directory for the report, plots and metrics.json")
    ev.add_argument("--format", choices=["md", "html"], default="md")
    ev.add_argument(
        "--class-rule",
        help=f"multi-class rule: {', '.join(CLASS_RULES)} or 'name:policy,...,fallback'",
    )
    ev.add_argument(
        "--record",
        action="store_true",
        help=f"write {EVALUATION_FILE} into the checkpoint (metrics + a fixed sample's metrics)",
    )
    ev.add_argument("--batch-size", type=positive, default=64)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_evaluate)

    tu = sub.add_parser("tune", help="Bayesian hyper-parameter search (Optuna TPE, resumable)")
    _add_training_arguments(tu)
    tu.add_argument("--study", required=True, help="SQLite file of the study (resumes if present)")
    tu.add_argument("--study-name", default="heads")
    tu.add_argument("--trials", type=int, required=True, help="finished trials wanted in total")
    tu.add_argument("--out", help="train the best trial's model into this checkpoint directory")
    tu.add_argument("--heads-only", action="store_true")
    tu.set_defaults(func=_tune)


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default", help="config name or YAML/JSON path")
    p.add_argument("--data", required=True, help="labelled training manifest (JSONL)")
    p.add_argument("--val", required=True, help="labelled validation manifest (JSONL)")
    p.add_argument("--epochs", type=positive, default=TrainSettings.epochs)
    p.add_argument("--patience", type=int, default=TrainSettings.patience)
    p.add_argument("--seed", type=int, default=TrainSettings.seed)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="embedding cache")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true")


def _davidson(args: argparse.Namespace) -> int:
    paths = convert_davidson(
        args.csv, args.out, val_size=args.val_size, soft_labels=args.soft_labels,
        clean_text=not args.raw_text, check_sha256=not args.no_check,
    )  # fmt: skip
    for name, path in paths.items():
        print(f"{name:<5} {path}")
    return 0


def _text_policies(args: argparse.Namespace) -> int:
    from ensemble.training.textdata import convert_text_policies

    paths = convert_text_policies(
        args.davidson, args.hatexplain, args.out, augment=not args.no_augment,
        toxigen=not args.no_toxigen, check_sha256=not args.no_check,
    )  # fmt: skip
    for name, path in paths.items():
        print(f"{name:<16} {path}")
    return 0


def _text_sets(args: argparse.Namespace) -> int:
    from ensemble.training.textsets import write_text_sets

    for name, path in write_text_sets(args.out).items():
        print(f"{name:<11} {path}")
    return 0


def _social_words(args: argparse.Namespace) -> int:
    from ensemble.training.textdata import social_words

    words = social_words(args.train)
    Path(args.out).write_text("".join(f"{w}\n" for w in words))
    print(f"{len(words)} words written to {args.out}")
    return 0


def _text_check(args: argparse.Namespace) -> int:
    from ensemble.pretrained import from_pretrained
    from ensemble.training.textcheck import format_report, text_check, write_report

    report = text_check(from_pretrained(args.checkpoint), args.sets)
    print(format_report(report))
    if args.json:
        print(f"written to {write_report(report, args.json)}")
    return 0


def _settings(args: argparse.Namespace, device: str) -> TrainSettings:
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    given["unfreeze"] = tuple(given.get("unfreeze", ()))
    return TrainSettings(**{**given, "device": device, "progress": not args.no_progress})


def _config(args: argparse.Namespace) -> ModelConfig:
    config = load_config(args.config)
    hidden, dropout = getattr(args, "head_hidden", None), getattr(args, "head_dropout", None)
    return dataclasses.replace(
        config,
        head_hidden=config.head_hidden if hidden is None else hidden,
        head_dropout=config.head_dropout if dropout is None else dropout,
    )


def _data_record(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "args": {k: v for k, v in vars(args).items() if k not in UNRECORDED},
        "data": {"train": file_sha256(args.data), "val": file_sha256(args.val)},
    }


def _save(
    result: Any,
    out: str,
    heads_only: bool,
    record: dict[str, Any],
    *,
    dtype: str = "float32",
    val_ads: list[dict[str, Any]] | None = None,
    update: tuple[str, int] | None = None,
) -> None:
    import torch

    from ensemble.pretrained import from_pretrained, save_pretrained, save_update

    weights: Literal["full", "heads"] = "heads" if heads_only else "full"
    extra = {"training": {**result.summary(), **record}}
    stored = (
        None if dtype == "float32" else dtype if dtype in DELTA_STEPS else getattr(torch, dtype)
    )

    if update is not None:
        save_update(result.model, out, update[0], rank=update[1], extra=extra)
    else:
        save_pretrained(result.model, out, weights=weights, extra=extra, dtype=stored)
    stale = Path(out) / EVALUATION_FILE
    stale.unlink(missing_ok=True)  # measured on other weights
    print(_training_table(result))
    if (stored is not None or update is not None) and val_ads:
        parity = _storage_parity(result.model, from_pretrained(out), val_ads)
        config_file = Path(out) / CONFIG_FILE  # recorded beside the weights, not saved again:
        payload = json.loads(config_file.read_text())  # a second update would chain on the first
        payload["checkpoint"]["training"]["storage_parity"] = parity
        config_file.write_text(json.dumps(payload, indent=2) + "\n")
        kind = f"rank-{update[1]} update" if update is not None else dtype
        print(
            f"{kind} storage on {parity['n']} validation ads: max |score difference| "
            f"{parity['max_abs_diff']:.2e}, {parity['decisions_changed']} flagged decisions changed"
        )
    print(f"checkpoint written to {out}")


def _storage_parity(trained: Any, stored: Any, ads: list[dict[str, Any]]) -> dict[str, float | int]:
    """How far the stored checkpoint's scores are from the trained model's on ``ads``."""
    import numpy as np

    from ensemble.training.evaluate import score_ads

    before, applicable = score_ads(trained, ads, progress=False)
    after, _ = score_ads(stored, ads, progress=False)
    thresholds = np.array([p.threshold for p in trained.config.policies])
    changed = ((before >= thresholds) != (after >= thresholds)) & applicable
    return {
        "n": len(ads),
        "max_abs_diff": float(np.abs(before - after)[applicable].max(initial=0.0)),
        "decisions_changed": int(changed.sum()),
    }


def _training_table(result: Any) -> str:
    lines = [
        f"best epoch {result.best_epoch} of {len(result.history)}, "
        f"validation mean PR-AUC {result.val_score:.4f}, {result.seconds:.0f} s",
        f"{'policy':<22} {'threshold':>9} {'val F1':>7} {'val PR-AUC':>10} {'n':>6}",
    ]
    for name, m in result.policies.items():
        lines.append(
            f"{name:<22} {m['threshold']:>9.4f} {m['val_f1']:>7.4f} {m['val_pr_auc']:>10.4f} {m['val_n']:>6}"
        )
    if result.world_size > 1:
        lines.append(
            f"{result.world_size} processes, max weight difference between ranks {result.max_rank_difference:.3g}"
        )
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from ensemble.builder import build_ensemble
    from ensemble.pretrained import from_pretrained
    from ensemble.training.train import train

    if args.weights_dtype in DELTA_STEPS and not args.heads_only:
        raise SystemExit(
            f"--weights-dtype {args.weights_dtype} stores differences from the base weights: "
            "it needs --heads-only"
        )
    if args.update_rank is not None and not (args.init and args.heads_only):
        raise SystemExit(
            "--update-rank stores a change of --init's weights: it needs --init and --heads-only"
        )
    given = [
        flag
        for flag, value in (
            ("--config", args.config != "default"),
            ("--head-hidden", args.head_hidden is not None),
            ("--head-dropout", args.head_dropout is not None),
        )
        if value
    ]
    if args.init and given:
        raise SystemExit(
            f"--init continues {args.init} with its own config: {', '.join(given)} would be "
            "ignored; leave them out, or train from the config without --init"
        )
    device = init_distributed(args.device)
    settings = _settings(args, device)
    if args.init:
        model = from_pretrained(args.init)
    else:
        model = build_ensemble(_config(args), seed=settings.seed)
    whole = [k for k in args.unfreeze if k in model.encoders and not model.encoders[k].tuned]
    if args.heads_only and whole:
        raise SystemExit(
            f"--heads-only would drop the fine-tuned encoders {whole}: leave one out, or "
            "fine-tune only parts a heads checkpoint stores (e.g. the text's tuned_layers)"
        )
    result = train(
        model, read_manifest(args.data), read_manifest(args.val), settings,
        cache_dir=None if args.no_cache else args.cache_dir, base_dir=Path(args.data).parent,
    )  # fmt: skip
    if not dist.is_initialized() or dist.get_rank() == 0:
        _save(
            result, args.out, args.heads_only, _data_record(args),
            dtype=args.weights_dtype, val_ads=read_manifest(args.val),
            update=None if args.update_rank is None else (args.init, args.update_rank),
        )  # fmt: skip
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ensemble.pretrained import from_pretrained
    from ensemble.training.evaluate import evaluate, measure
    from ensemble.training.report import report_tables, write_report

    model = from_pretrained(args.checkpoint)
    ads = read_manifest(args.data)
    rule = parse_class_rule(args.class_rule) if args.class_rule else None
    result = evaluate(
        model, ads, rule=rule, base_dir=Path(args.data).parent, batch_size=args.batch_size,
        device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    for title, (header, rows) in report_tables(result):
        widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
        print(f"\n{title}")
        for row in (header, *rows):
            print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    if args.report:
        title = f"{args.checkpoint} on {args.data}"
        print(
            f"report written to {write_report(result, args.report, title=title, fmt=args.format)}"
        )
    if args.record:
        positions = sample_positions(len(ads), RECORD_SAMPLE)
        sample = measure(
            result.policies, result.thresholds.tolist(), result.scores[positions],
            result.known[positions], [ads[i] for i in positions], rule,
        )  # fmt: skip
        record = {
            "data": {"file": Path(args.data).name, "sha256": file_sha256(args.data), "n": len(ads)},
            "class_rule": args.class_rule,
            "metrics": result.to_json(),
            "sample": {"ids": [ads[i]["id"] for i in positions], "metrics": sample.to_json()},
        }
        path = Path(args.checkpoint) / EVALUATION_FILE
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"recorded in {path}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ensemble.training.tune import finished, train_with, tune

    settings = _settings(args, args.device)
    train_ads, val_ads = read_manifest(args.data), read_manifest(args.val)
    options = {
        "cache_dir": None if args.no_cache else args.cache_dir,
        "base_dir": Path(args.data).parent,
    }
    study = tune(
        _config(args), train_ads, val_ads, storage=args.study, trials=args.trials,
        study_name=args.study_name, settings=settings, seed=args.seed, **options,
    )  # fmt: skip
    print(f"{finished(study)} finished trials in {args.study} ({args.study_name})")
    print(
        study.trials_dataframe(attrs=("number", "value", "state", "params")).to_string(index=False)
    )
    best = study.best_trial
    print(f"best trial {best.number}: validation mean PR-AUC {best.value:.4f}")
    print(
        "train it with:", " ".join(f"--{k.replace('_', '-')} {v}" for k, v in best.params.items())
    )
    if args.out:
        result = train_with(_config(args), settings, best.params, train_ads, val_ads, **options)
        _save(result, args.out, args.heads_only, {**_data_record(args), "tuned": best.params})
    return 0
