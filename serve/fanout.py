"""The client of a service split by modality: one archive per modality, one ad fanned out.

The other deployment of the same ensemble (``benchmarks/fused_vs_separate.py`` compares them):
each modality's encoders and heads are their own archive (:func:`ensemble.builder.
modality_ensemble`), the client sends each part of an ad to the archive of its modality at once
and merges the answers as the fused graph's :class:`~ensemble.fusion.MaxFusion` does: a
policy's score is the highest among the parts that score it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ensemble.decisions import ad_decision
from ensemble.rows import ModelInfo, Row, ad_id
from serve.client import Client, Prediction

STATUS_RANK = {"not_applicable": 0, "untrained": 1, "scored": 2}


def _rank(entry: Mapping[str, Any]) -> tuple[int, float]:
    """Which of two entries of a policy the merged row keeps: the higher."""
    score = entry["score"] if entry["status"] == "scored" else 0.0
    return STATUS_RANK[entry["status"]], float(score)


def merge_results(ad_id: str, parts: Sequence[Mapping[str, Any]]) -> Row:
    """One result row from the rows of the per-modality archives for one ad.

    A policy is ``scored`` with the highest score of the parts that scored it (and that part's
    flag: every part has the policy's threshold), else ``untrained`` when a part withheld it,
    else ``not_applicable``; policies no part knows are absent. Per-modality scores,
    measurements and warnings are the parts' own; ``model`` names every part's archive
    (``"text+image"``) with their policies' decision methods; the ad's decision is taken over
    the merged policies (:func:`~ensemble.decisions.ad_decision`). An error in any part makes the whole ad an error with every part's
    errors.
    """
    models = [p.get("model") or {"name": "unknown", "version": ""} for p in parts]
    model: ModelInfo = {
        "name": "+".join(dict.fromkeys(m["name"] for m in models)),
        "version": "+".join(dict.fromkeys(m["version"] for m in models)),
    }
    warnings = [w for p in parts for w in p.get("warnings", [])]
    failed = [p for p in parts if p.get("status") != "ok"]
    if failed:
        return {
            "id": ad_id,
            "status": "error",
            "model": model,
            "warnings": warnings,
            "http_status": max(int(p.get("http_status", 500)) for p in failed),
            "errors": [e for p in failed for e in p.get("errors", [])],
        }
    policies: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, entry in part["policies"].items():
            known = policies.setdefault(name, dict(entry))
            if _rank(entry) > _rank(known):
                known.update(entry)
    model["decisions"] = {k: v for m in models for k, v in m.get("decisions", {}).items()}
    return {
        "id": ad_id,
        "status": "ok",
        "model": model,
        "warnings": warnings,
        "decision": ad_decision(entry.get("decision") for entry in policies.values()),
        "flags": [name for name, entry in policies.items() if entry["flag"]],
        "policies": policies,
        "modalities": {m: s for p in parts for m, s in p["modalities"].items()},
        "measurements": {k: v for p in parts for k, v in p["measurements"].items()},
    }


class FanOutClient:
    """Scores an ad on per-modality archives concurrently and merges the answers.

    Args:
        clients: Modality -> :class:`~serve.client.Client` of that modality's archive.

    Not thread-safe: give each calling thread its own (each holds its clients' sessions).
    """

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self.clients = dict(clients)
        self.pool = ThreadPoolExecutor(max_workers=len(self.clients))

    def predict(self, ad: Mapping[str, Any]) -> Prediction:
        """Score one ad: its id and each present field go to that modality's archive.

        Returns:
            A :class:`~serve.client.Prediction` of the merged row; its status is the worst of
            the parts' (200 when all answered), its model version None.

        Raises:
            ValueError: The ad has no field any archive reads.
        """
        fields = [m for m in self.clients if ad.get(m) is not None]
        if not fields:
            raise ValueError(f"ad {ad.get('id')!r} has none of {sorted(self.clients)}")
        futures = [
            self.pool.submit(self.clients[m].predict, {"id": ad.get("id"), m: ad[m]})
            for m in fields
        ]
        answers = [f.result() for f in futures]
        merged = merge_results(ad_id(ad, ""), [a.body for a in answers])
        return Prediction(max(a.status for a in answers), merged, None)

    def close(self) -> None:
        """Stop the fan-out threads."""
        self.pool.shutdown()
