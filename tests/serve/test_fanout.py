"""Merging the rows of per-modality archives (no TorchServe needed)."""

from __future__ import annotations

from typing import Any

from serve.fanout import merge_results


def entry(status: str, score: float | None = None, threshold: float = 0.5) -> dict[str, Any]:
    flag = None if score is None else score >= threshold
    return {"status": status, "score": score, "flag": flag, "threshold": threshold}


def row(model: str, policies: dict[str, Any], modality: str) -> dict[str, Any]:
    scored = {n: e["score"] for n, e in policies.items() if e["status"] == "scored"}
    return {
        "id": "ad",
        "status": "ok",
        "model": {"name": model, "version": "1"},
        "flags": [n for n, e in policies.items() if e["flag"]],
        "policies": policies,
        "modalities": {modality: scored},
        "measurements": {f"{modality}.x": 1.0},
    }


def test_highest_score_wins_and_flags_follow() -> None:
    text = row("t", {"violence": entry("scored", 0.2), "adult": entry("not_applicable")}, "text")
    image = row("i", {"violence": entry("scored", 0.7), "adult": entry("untrained")}, "image")
    merged = merge_results("ad", [text, image])
    assert merged["policies"]["violence"] == entry("scored", 0.7)
    assert merged["policies"]["adult"]["status"] == "untrained"
    assert merged["flags"] == ["violence"]
    assert set(merged["modalities"]) == {"text", "image"}
    assert merged["measurements"] == {"text.x": 1.0, "image.x": 1.0}
    assert merge_results("ad", [image, text])["policies"] == merged["policies"]


def test_an_error_in_any_part_fails_the_ad() -> None:
    error = {"id": "ad", "status": "error", "http_status": 400, "errors": [{"field": "image"}]}
    text = row("t", {"violence": entry("scored", 0.2)}, "text")
    merged = merge_results("ad", [text, error])
    model = {"name": "t+unknown", "version": "1+"}
    assert merged == {**error, "model": model, "warnings": [], "errors": [{"field": "image"}]}
