"""The report as one self-contained HTML page: tables and matplotlib plots as base64 PNGs.

Figures are made with matplotlib's object API (no pyplot state), so this is safe to call from
any thread of a process that also uses pyplot.

Everything is drawn from the report JSON alone, so a page can be rebuilt from ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from matplotlib.figure import Figure

BASELINE_COLOR, PRODUCTION_COLOR = "#4c72b0", "#dd8452"


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _bin_labels(edges: Sequence[float]) -> list[str]:
    bounds = ["-inf", *(f"{e:.3g}" for e in edges), "inf"]
    return [f"[{a}, {b})" for a, b in pairwise(bounds)]


def distribution_plot(title: str, entry: Mapping[str, Any], violated: bool) -> str:
    """Baseline and production shares per baseline bin, with the drift numbers in the title."""
    bins = entry["bins"]
    share = {
        side: np.asarray(bins[side], dtype=float) / max(sum(bins[side]), 1)
        for side in ("baseline", "production")
    }
    x = np.arange(len(share["baseline"]))
    fig = Figure(figsize=(6.4, 2.8))
    ax = fig.subplots()
    ax.bar(x - 0.2, share["baseline"], 0.4, label="baseline", color=BASELINE_COLOR)
    ax.bar(x + 0.2, share["production"], 0.4, label="production", color=PRODUCTION_COLOR)
    ax.set_xticks(x, _bin_labels(bins["edges"]), rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("share of values")
    ax.set_title(
        f"{title}  PSI {entry['psi']:.3f}  JS {entry['js']:.3f}  "
        f"KS D {entry['ks_statistic']:.3f}  p_adj {entry['p_adjusted']:.2g}",
        fontsize=9,
        color="crimson" if violated else "black",
    )
    ax.legend(fontsize=7)
    return _png(fig)


def rates_plot(title: str, rates: Mapping[str, Mapping[str, Any]], violated: set[str]) -> str:
    """Baseline and production rates side by side (presence, flags)."""
    names = list(rates)
    x = np.arange(len(names))
    fig = Figure(figsize=(6.4, 2.6))
    ax = fig.subplots()
    for offset, side, color in (
        (-0.2, "baseline", BASELINE_COLOR),
        (0.2, "production", PRODUCTION_COLOR),
    ):
        ax.bar(x + offset, [rates[n][side] or 0.0 for n in names], 0.4, label=side, color=color)
    ax.set_xticks(x, names, fontsize=8)
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        tick.set_color("crimson" if name in violated else "black")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("-" if value is None else str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _distribution_section(
    title: str, entries: Mapping[str, Mapping[str, Any]], violated: set[str]
) -> str:
    header = ("name", "baseline n", "n", "judged", "PSI", "JS", "KS D", "KS p (BH)")
    rows = [
        (
            name,
            e["baseline_count"],
            e["count"],
            e["judged"],
            e.get("psi"),
            e.get("js"),
            e.get("ks_statistic"),
            e.get("p_adjusted"),
        )
        for name, e in entries.items()
    ]
    plots = "".join(
        distribution_plot(name, e, name in violated) for name, e in entries.items() if "bins" in e
    )
    return f"<h2>{html.escape(title)}</h2>{_table(header, rows)}<div class='plots'>{plots}</div>"


def render_html(report: Mapping[str, Any]) -> str:
    """The report as an HTML page.

    Args:
        report: From :func:`serve.monitor.report.compare`.
    """
    violated: dict[str, set[str]] = {}
    for v in report["violations"]:
        violated.setdefault(v["scope"], set()).add(v["name"])
    production, baseline = report["production"], report["baseline"]
    status = (
        "<p class='ok'>No violation.</p>"
        if report["ok"]
        else "<p class='bad'>"
        + str(len(report["violations"]))
        + " violation(s):</p><ul>"
        + "".join(f"<li>{html.escape(v['message'])}</li>" for v in report["violations"])
        + "</ul>"
    )
    parts = [
        "<h1>adpolicy monitoring report</h1>",
        f"<p>Baseline: {_fmt(baseline['model'])}, {_fmt(baseline['records'])} ads ({_fmt(baseline['source'])}). "
        f"Production: {production['records']} records, {production['errors']} errors, "
        f"{_fmt(production['first'])} to {_fmt(production['last'])}. Created {_fmt(report['created'])}. "
        f"p-values adjusted with {report['correction']}.</p>",
        status,
        "".join(f"<p class='note'>{html.escape(n)}</p>" for n in report["notes"]),
        "<h2>Modality presence</h2>",
        _table(
            ("modality", "baseline", "production", "change", "p (BH)", "judged"),
            [
                (m, e["baseline"], e["production"], e["change"], e["p_adjusted"], e["judged"])
                for m, e in report["presence"].items()
            ],
        ),
        rates_plot(
            "presence rate per modality", report["presence"], violated.get("modality", set())
        ),
        "<h2>Flag rates</h2>",
        _table(
            ("policy", "baseline", "production", "change", "p (BH)", "judged"),
            [
                (
                    p,
                    e["flag_rate"]["baseline"],
                    e["flag_rate"]["production"],
                    e["flag_rate"]["change"],
                    e["flag_rate"]["p_adjusted"],
                    e["flag_rate"]["judged"],
                )
                for p, e in report["policies"].items()
            ],
        ),
        rates_plot(
            "flag rate per policy",
            {p: e["flag_rate"] for p, e in report["policies"].items()},
            violated.get("policy", set()),
        )
        if report["policies"]
        else "<p>No policy was scored.</p>",
        _distribution_section("Policy scores", report["policies"], violated.get("policy", set())),
        _distribution_section(
            "Input statistics and measurements", report["inputs"], violated.get("input", set())
        ),
    ]
    if report["labelled"] is not None:
        metrics = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
        rows = [
            (
                p,
                e["production"]["n"],
                *((e["baseline"] or {}).get(k) for k in metrics),
                *(e["production"][k] for k in metrics),
                e["f1_drop"],
            )
            for p, e in report["labelled"].items()
        ]
        header = ("policy", "labelled", *(f"baseline {k}" for k in metrics), *metrics, "F1 drop")
        parts += ["<h2>Quality against labels</h2>", _table(header, rows)]
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}.bad{color:crimson}"
        ".ok{color:green}.note{color:#8a6d3b}img{margin:4px}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>adpolicy monitoring report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
