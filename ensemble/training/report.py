"""The evaluation report: Markdown or HTML tables, PR curves and reliability diagrams (PNG),
before and after each policy's stored calibration."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.metrics import precision_recall_curve

from ensemble.training.evaluate import Evaluation, reliability_bins

Table = tuple[list[str], list[list[str]]]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def policy_table(evaluation: Evaluation) -> Table:
    header = ["policy", "n", "pos", "threshold", "precision", "recall", "F1", "ROC-AUC",
              "PR-AUC", "ECE", "TP", "FP", "FN", "TN"]  # fmt: skip
    rows = []
    for name, m in evaluation.metrics.items():
        c = m["confusion"]
        values = [m["n"], m["positives"], m["threshold"], m["precision"], m["recall"], m["f1"],
                  m["roc_auc"], m["pr_auc"], m["ece"], c["tp"], c["fp"], c["fn"], c["tn"]]  # fmt: skip
        rows.append([name, *map(_fmt, values)])
    return header, rows


def decision_table(evaluation: Evaluation) -> Table:
    """Per policy: its calibration, the ECE before and after it, and what its band decides."""
    header = ["policy", "calibration", "ECE raw", "ECE calibrated", "allow <", "block >=",
              "block precision", "allow miss rate", "review share", "blocked", "allowed"]  # fmt: skip
    rows = []
    for name, m in evaluation.metrics.items():
        d = m.get("decisions") or {}
        values = [m.get("calibration") or "none", m["ece"], m.get("ece_calibrated"),
                  *(d.get(k) for k in ("allow", "block", "block_precision", "allow_miss_rate",
                                       "review_share", "blocked", "allowed"))]  # fmt: skip
        rows.append([name, *map(_fmt, values)])
    return header, rows


def reliability_table(evaluation: Evaluation, j: int) -> Table:
    """The reliability bins of policy ``j``: count, mean score and positive rate per bin, on
    the raw scores and on the calibrated probabilities."""
    rows_of = evaluation.known[:, j]
    labels = evaluation.labels[rows_of, j]
    calibrated = evaluation.calibrated if evaluation.calibrated is not None else evaluation.scores
    before = reliability_bins(evaluation.scores[rows_of, j], labels)
    after = reliability_bins(calibrated[rows_of, j], labels)
    header = ["bin", "n raw", "mean raw", "rate raw", "n calibrated", "mean calibrated",
              "rate calibrated"]  # fmt: skip
    rows = []
    for b in range(len(before[0])):
        cells = [f"{b / len(before[0]):.1f}-{(b + 1) / len(before[0]):.1f}"]
        for mean, rate, count in (before, after):
            filled = count[b] > 0
            cells += [str(int(count[b])), _fmt(float(mean[b])) if filled else "-",
                      _fmt(float(rate[b])) if filled else "-"]  # fmt: skip
        rows.append(cells)
    return header, rows


def class_tables(classes: dict[str, Any]) -> list[tuple[str, Table]]:
    """The summary (ours beside the references), per-class scores and the confusion."""
    names = list(classes["per_class"])
    summary_header = ["model", "accuracy", "macro-F1", *(f"F1 {n}" for n in names)]
    ours = ["this model", _fmt(classes["accuracy"]), _fmt(classes["macro_f1"])]
    ours += [_fmt(classes["per_class"][n]["f1"]) for n in names]
    summary = [ours]
    for ref, values in classes.get("reference", {}).items():
        row = [ref, _fmt(values.get("accuracy")), _fmt(values.get("macro_f1"))]
        summary.append(row + [_fmt(values.get(f"f1_{n}")) for n in names])
    per_class = [
        [n, *(_fmt(v[k]) for k in ("precision", "recall", "f1", "support"))]
        for n, v in classes["per_class"].items()
    ]
    matrix = classes["confusion"]["rows_true"]
    confusion = [[n, *map(str, row)] for n, row in zip(names, matrix, strict=True)]
    return [
        ("Classes", (summary_header, summary)),
        ("Per class", (["class", "precision", "recall", "F1", "support"], per_class)),
        ("Confusion (rows: true, columns: predicted)", (["true \\ predicted", *names], confusion)),
    ]


def plot_pr_curve(evaluation: Evaluation, j: int, path: Path) -> None:
    """Precision-recall curve of policy ``j`` with its operating point."""
    rows = evaluation.known[:, j]
    scores, labels = evaluation.scores[rows, j], evaluation.labels[rows, j]
    precision, recall, _ = precision_recall_curve(labels, scores)
    m = evaluation.metrics[evaluation.policies[j]]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision, label=f"PR-AUC {_fmt(m['pr_auc'])}")
    ax.plot([m["recall"]], [m["precision"]], "o", label=f"threshold {m['threshold']:.3f}")
    ax.axhline(labels.mean(), color="grey", linestyle=":", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(evaluation.policies[j])
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(evaluation: Evaluation, j: int, path: Path) -> None:
    """Reliability diagram of policy ``j``: positive rate against mean score per bin, raw and
    (when the policy has a calibration) calibrated."""
    rows = evaluation.known[:, j]
    m = evaluation.metrics[evaluation.policies[j]]
    curves = [("raw", evaluation.scores, m["ece"])]
    if m.get("calibration") and evaluation.calibrated is not None:
        curves.append((m["calibration"], evaluation.calibrated, m["ece_calibrated"]))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for label, scores, ece in curves:
        mean, rate, count = reliability_bins(scores[rows, j], evaluation.labels[rows, j])
        filled = count > 0
        ax.plot(mean[filled], rate[filled], "o-", label=f"{label} (ECE {_fmt(ece)})")
    ax.set(xlabel="mean score", ylabel="positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(evaluation.policies[j])
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_tables(evaluation: Evaluation) -> list[tuple[str, Table]]:
    """Every table of the report, titled: policies, calibration and decisions, the class
    tables of a class rule, and each measured policy's reliability bins."""
    sections: list[tuple[str, Table]] = [
        ("Policies", policy_table(evaluation)),
        ("Calibration and decisions", decision_table(evaluation)),
    ]
    if evaluation.classes is not None:
        sections += class_tables(evaluation.classes)
    sections += [
        (f"Reliability: {name}", reliability_table(evaluation, j))
        for j, name in enumerate(evaluation.policies)
        if name in evaluation.metrics
    ]
    return sections


def _markdown(title: str, table: Table) -> str:
    header, rows = table
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html(title: str, table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<h2>{html.escape(title)}</h2>\n<table><tr>{head}</tr>{body}</table>\n"


def write_report(
    evaluation: Evaluation, out_dir: str | Path, *, title: str, fmt: str = "md"
) -> Path:
    """Write ``report.md`` (or ``report.html``), ``metrics.json`` and the PNG plots.

    Args:
        evaluation: What :func:`ensemble.training.evaluate.evaluate` returned.
        out_dir: Output directory (created).
        title: The report's heading (e.g. the checkpoint and data names).
        fmt: ``"md"`` or ``"html"``.

    Returns:
        The report's path.
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"report format {fmt!r}: expected 'md' or 'html'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(evaluation.to_json(), indent=2) + "\n")
    sections = report_tables(evaluation)
    images: list[tuple[str, Sequence[str]]] = []
    for j, name in enumerate(evaluation.policies):
        m = evaluation.metrics.get(name)
        if m is None or m["pr_auc"] is None:
            continue
        plot_pr_curve(evaluation, j, out / f"pr_{name}.png")
        plot_reliability(evaluation, j, out / f"reliability_{name}.png")
        images.append((name, (f"pr_{name}.png", f"reliability_{name}.png")))
    n = int(evaluation.scores.shape[0])
    if fmt == "md":
        text = f"# {title}\n\n{n} ads.\n\n" + "\n".join(_markdown(t, tab) for t, tab in sections)
        for name, files in images:
            text += f"\n## {name}\n\n" + " ".join(f"![{f}]({f})" for f in files) + "\n"
    else:
        text = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{n} ads.</p>"
            + "".join(_html(t, tab) for t, tab in sections)
        )
        for name, files in images:
            text += f"<h2>{html.escape(name)}</h2>" + "".join(f"<img src='{f}'>" for f in files)
        text += "</body></html>\n"
    path = out / f"report.{fmt}"
    path.write_text(text)
    return path
