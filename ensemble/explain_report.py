"""The explanations as ONE self-contained HTML page (``adpolicy explain --html``).

Per ad: the per-modality breakdown of every policy; the words of the text highlighted by
attribution (red raises the score, blue lowers it; hover for the number); the image with its
occlusion map laid over it (an inline PNG); flashes per second against the limit and loudness
per second against the target's band (inline SVG). No script, no web fonts, no link out.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ensemble.explain import Explained

THUMBNAIL = 360  # longest side of the image shown, pixels
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
section { border-top: 1px solid #ccc; padding: 1em 0; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
.words span { padding: 1px 2px; margin: 1px; border-radius: 3px; line-height: 1.9; }
.error { color: #a00; }
.flag { color: #a00; font-weight: bold; }
figure { display: inline-block; margin: 0 1em 0 0; }
"""


def render_report(explained: Iterable[Explained], title: str = "Explanations") -> str:
    """The page for explained ads, in order."""
    sections = "\n".join(_section(e) for e in explained)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n"
        f"<p>Attribution: a policy's score minus its score with the word deleted or the cell "
        f"occluded. <span style='background:{_colour(1.0)}'>raises the score</span> "
        f"<span style='background:{_colour(-1.0)}'>lowers it</span>.</p>\n"
        f"{sections}\n</body></html>\n"
    )


def _section(item: Explained) -> str:
    row = item.row
    head = f"<h2>{html.escape(row['id'])}</h2>"
    if row["status"] != "ok":
        problems = "; ".join(f"{e['field']}: {e['error']}" for e in row.get("errors", []))
        return f"<section>{head}<p class='error'>not scored: {html.escape(problems)}</p></section>"
    explanation = row.get("explanation", {})
    flags = ", ".join(row.get("flags", [])) or "none"
    parts = [head, f"<p>flags: <span class='flag'>{html.escape(flags)}</span></p>"]
    parts.append(_breakdown(explanation.get("breakdown", {})))
    for modality, render in (("text", _text), ("video", _video), ("audio", _audio)):
        if modality in explanation:
            parts.append(_guard(explanation[modality], render))
    if "image" in explanation:
        parts.append(_guard(explanation["image"], lambda e: _image(e, item.image)))
    parts.append(f"<p><small>explained in {explanation.get('ms', 0):.0f} ms</small></p>")
    return "<section>" + "\n".join(parts) + "</section>"


def _guard(part: Mapping[str, Any], render: Any) -> str:
    if "error" in part:
        return f"<p class='error'>{html.escape(part['error'])}</p>"
    out: str = render(part)
    return out


def _breakdown(breakdown: Mapping[str, Any]) -> str:
    modalities = sorted({m for entry in breakdown.values() for m in entry["modalities"]})
    header = "".join(f"<th>{m}</th>" for m in modalities)
    rows = []
    for policy, entry in breakdown.items():
        cells = "".join(
            f"<td>{entry['modalities'][m]:.3f}</td>" if m in entry["modalities"] else "<td></td>"
            for m in modalities
        )
        rows.append(
            f"<tr><th>{html.escape(policy)}</th><td>{entry['score']:.3f}</td>{cells}"
            f"<td>{entry['decided_by'] or ''}</td></tr>"
        )
    return (
        f"<table><tr><th>policy</th><th>score</th>{header}<th>decided by</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _colour(value: float) -> str:
    """Red for a positive attribution, blue for a negative one; ``value`` in [-1, 1]."""
    alpha = min(abs(value), 1.0) * 0.8
    return f"rgba(220,40,40,{alpha:.2f})" if value >= 0 else f"rgba(40,90,220,{alpha:.2f})"


def _scale(values: Iterable[float | None]) -> float:
    """What a full colour stands for: the largest attribution, at least 0.05 (so that noise
    on a text no word moves stays pale)."""
    return max([abs(v) for v in values if v is not None] + [0.05])


def _text(part: Mapping[str, Any]) -> str:
    lines = [f"<h3>text ({part['variants']} texts through the model, {part['ms']:.0f} ms)</h3>"]
    for policy, values in part["attribution"].items():
        scale = _scale(values)
        spans = "".join(
            f"<span style='background:{_colour(v / scale) if v is not None else 'none'}' "
            f"title='{v if v is not None else 'not explained'}'>{html.escape(word)}</span> "
            for word, v in zip(part["words"], values, strict=True)
        )
        score = part["score"][policy]
        lines.append(
            f"<p><b>{html.escape(policy)}</b> (score {score:.3f}, full colour {scale:.3f})</p>"
            f"<p class='words'>{spans}</p>"
        )
    return "\n".join(lines)


def _image(part: Mapping[str, Any], image: Image.Image | None) -> str:
    rows, cols = part["grid"]
    lines = [
        f"<h3>image ({rows} x {cols} cells occluded by {part['occluder']}, "
        f"{part['variants']} images through the model, {part['ms']:.0f} ms)</h3>"
    ]
    for policy, grid in part["attribution"].items():
        values = np.asarray(grid, dtype=np.float64)
        scale = float(np.abs(values).max()) or 1.0
        picture = (
            f"<img alt='{html.escape(policy)}' src='data:image/png;base64,"
            f"{overlay_png(image, values / scale)}'>"
            if image is not None
            else ""
        )
        lines.append(
            f"<figure>{picture}<figcaption>{html.escape(policy)}: score "
            f"{part['score'][policy]:.3f}; full colour {scale:.4f}</figcaption></figure>"
        )
    return "\n".join(lines)


def overlay_png(image: Image.Image, grid: np.ndarray) -> str:
    """``image`` scaled to ``THUMBNAIL`` with ``grid`` ([rows, cols] in [-1, 1]) laid over it
    as translucent red / blue cells; base64 PNG."""
    picture = image.convert("RGB")
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    rows, cols = grid.shape
    cells = np.zeros((rows, cols, 4), dtype=np.uint8)
    positive = grid >= 0
    cells[..., 0] = np.where(positive, 220, 40)
    cells[..., 1] = np.where(positive, 40, 90)
    cells[..., 2] = np.where(positive, 40, 220)
    cells[..., 3] = np.clip(np.abs(grid) * 0.7 * 255, 0, 255).astype(np.uint8)
    # cell edges as explain.grid_boxes rounds them: a NEAREST resize of the grid agrees
    layer = Image.fromarray(cells, "RGBA").resize(picture.size, Image.Resampling.NEAREST)
    blended = Image.alpha_composite(picture.convert("RGBA"), layer)
    buffer = io.BytesIO()
    blended.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _video(part: Mapping[str, Any]) -> str:
    general, red = part["flashes_per_second"], part["red_flashes_per_second"]
    top = max([part["limit"] + 1, *general, *red])
    chart = svg_bars(general, top, line=part["limit"], label="flashes / s")
    worst = part["worst_window_s"]
    return (
        f"<h3>video: flashes in the one-second window ending in each second "
        f"(limit {part['limit']:g}; most {part['max_flashes']:g} general, "
        f"{part['max_red_flashes']:g} red; worst window from {worst:.2f} s)</h3>{chart}"
        + (svg_bars(red, top, line=part["limit"], label="red flashes / s") if any(red) else "")
    )


def _audio(part: Mapping[str, Any]) -> str:
    target, tolerance = part["target_lufs"], part["tolerance_lu"]
    lufs = part["lufs_per_second"]
    chart = svg_bars(
        [v + 70 for v in lufs],
        max([v + 70 for v in lufs] + [target + tolerance + 75]),
        band=(target - tolerance + 70, target + tolerance + 70),
        label="LUFS + 70",
    )
    return (
        f"<h3>audio: loudness per second (integrated {part['integrated_lufs']:.1f} LUFS; "
        f"target {target:g} +/- {tolerance:g} LU, shaded)</h3>{chart}"
    )


def svg_bars(
    values: Sequence[float],
    top: float,
    *,
    line: float | None = None,
    band: tuple[float, float] | None = None,
    label: str = "",
) -> str:
    """A small inline SVG bar chart: one bar per second from 0 to ``top``, with an optional
    red limit ``line`` and a green ``band``."""
    width, height, bar = 40 + 14 * max(len(values), 1), 120, 12
    scale = (height - 20) / max(top, 1e-9)

    def y(value: float) -> float:
        return height - 10 - max(value, 0.0) * scale

    shapes = []
    if band is not None:
        shapes.append(
            f"<rect x='30' y='{y(band[1]):.1f}' width='{width - 30}' "
            f"height='{y(band[0]) - y(band[1]):.1f}' fill='#cfc'/>"
        )
    for i, value in enumerate(values):
        shapes.append(
            f"<rect x='{32 + 14 * i}' y='{y(value):.1f}' width='{bar}' "
            f"height='{height - 10 - y(value):.1f}' fill='#557'><title>{i} s: {value:.2f}"
            "</title></rect>"
        )
    if line is not None:
        shapes.append(
            f"<line x1='30' x2='{width}' y1='{y(line):.1f}' y2='{y(line):.1f}' stroke='#c00'/>"
        )
    shapes.append(f"<text x='0' y='10' font-size='10'>{html.escape(label)}</text>")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
        + "".join(shapes)
        + "</svg>"
    )
