"""Any file survives: hostile lines mixed with good ads (Hypothesis).

The run always finishes, every non-blank line has exactly one row, in order, and each good
ad's row equals its row when scored alone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ensemble import Scorer, samples

GOOD_TEXTS = ("Fresh coffee, delivered weekly.", "Summer sale: 30% off sandals.", "Win big!")
PNG = samples.png_bytes(Image.new("RGB", (40, 30), (200, 10, 10)))


@pytest.fixture(scope="module")
def scorer(small_model) -> Scorer:
    return Scorer(small_model, batch_size=4)


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
# any code point: controls, zero-width and bidi marks, unassigned, and lone surrogates
odd_text = st.text(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=40)
paths = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["../outside.png", "/etc/passwd", "http://x/a.png", "a\x00b.png", "", " "]),
)
media = st.one_of(
    st.binary(max_size=64).map(b64),
    st.integers(1, len(PNG)).map(lambda n: b64(PNG[:n])),  # truncated, or whole
    paths,
    json_values,
)


@st.composite
def hostile_line(draw: st.DrawFn) -> bytes:
    good = json.dumps({"id": "x", "text": draw(st.sampled_from(GOOD_TEXTS))})
    kind = draw(st.sampled_from(["bytes", "cut", "types", "deep", "unicode", "media", "value"]))
    ad: Any
    if kind == "bytes":
        raw = draw(st.binary(min_size=1, max_size=80)).replace(b"\n", b" ")
        return raw if raw.strip() else b"\xff"
    if kind == "cut":
        return good[: draw(st.integers(1, len(good) - 1))].encode()
    if kind == "deep":
        depth = draw(st.integers(30, 5000))
        return ('{"id": "d", "meta": ' + "[" * depth + "]" * depth + "}").encode()
    if kind == "types":
        ad = {k: draw(json_values) for k in draw(st.sets(st.sampled_from(["id", "text", "image"])))}
    elif kind == "unicode":
        ad = {"id": draw(odd_text), "text": draw(odd_text)}
    elif kind == "media":
        field = draw(st.sampled_from(["image", "audio", "video"]))
        ad = {field: draw(media), **({"text": "hi"} if draw(st.booleans()) else {})}
    else:
        ad = draw(json_values)
    return json.dumps(ad).encode()


good_ad = st.builds(
    lambda i, t: {"id": f"good-{i}", "text": t}, st.integers(0, 10**6), st.sampled_from(GOOD_TEXTS)
)


def policies(row: Mapping[str, Any]) -> dict[str, Any]:
    return {n: e["score"] for n, e in row["policies"].items()}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(good_ad, hostile_line()), min_size=1, max_size=12))
def test_hostile_lines_cost_only_their_own_row(scorer, tmp_path_factory, lines) -> None:
    folder: Path = tmp_path_factory.mktemp("hostile")
    encoded = [json.dumps(x).encode() if isinstance(x, dict) else x for x in lines]
    path = folder / "ads.jsonl"
    path.write_bytes(b"\n".join(encoded) + b"\n")
    rows = scorer.score_file(path)
    assert len(rows) == len(lines)
    for line, row in zip(lines, rows, strict=True):
        assert set(row) >= {"id", "status", "model", "warnings"}
        if isinstance(line, dict):
            assert row["status"] == "ok", row
            alone = scorer.score([line])[0]
            assert row["id"] == alone["id"] == line["id"]
            assert policies(row) == pytest.approx(policies(alone), abs=1e-6)
        elif row["status"] == "error":
            assert row["errors"], row
            assert row["http_status"] in (400, 413), row  # never an internal error
