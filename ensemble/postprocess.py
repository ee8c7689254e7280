"""From graph outputs to result rows: calibration, thresholds, flags, decisions, withheld
untrained scores.

Shared by offline scoring (eager or over an exported artifact) and the TorchServe handler,
which knows the model only through its manifest: everything here is built from the config and
the measurement names. This is the ONE place where a policy's stored calibration is applied to
the graph's raw scores and its band turns them into ``allow`` / ``review`` / ``block``
(:mod:`ensemble.decisions`): the graph stays what was traced and parity-checked, and the same
rows come out of every path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from torch import Tensor

from encoders.base import MODALITIES
from ensemble.config import ModelConfig
from ensemble.decisions import ad_decision
from ensemble.rows import ModelInfo, Row, model_info


@dataclass(frozen=True)
class ResultFormatter:
    """Turns one batch's outputs into one JSON-ready result per ad.

    Args:
        config: The ensemble's config (policies, thresholds, which encoder scores what).
        measurement_names: Names of the measurement columns, ``"<encoder key>.<name>"``.
    """

    config: ModelConfig
    measurement_names: Sequence[str]

    @cached_property
    def model(self) -> ModelInfo:
        """The model info every result reports (:func:`ensemble.rows.model_info`)."""
        return model_info(self.config)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores [..., P] (policies last), float64."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.stack(
            [p.calibrate(scores[..., j]) for j, p in enumerate(self.config.policies)], -1
        )

    def _modalities_of(self, policy_heads: Sequence[str]) -> set[str]:
        return {self.config.modality(k) for k in policy_heads}

    def format_batch(
        self,
        ids: Sequence[str],
        scores: Tensor,
        modality_scores: Tensor,
        measurements: Tensor,
        presence: Tensor,
        warnings: Sequence[Sequence[str]] | None = None,
    ) -> list[Row]:
        """Args: ids; raw scores [B, P]; raw modality_scores [B, 4, P]; measurements [B, K];
        presence [B, 4]; each ad's warnings. Returns one result row per ad."""
        raw = scores.float().cpu().numpy()
        calibrated_l = self.calibrate(raw).tolist()
        breakdown_l = self.calibrate(modality_scores.float().cpu().numpy()).tolist()
        measured_l = measurements.float().cpu().tolist()
        present_l = presence.cpu().bool().tolist()
        notes = warnings if warnings is not None else [()] * len(ids)
        columns = zip(
            ids, raw.tolist(), calibrated_l, breakdown_l, measured_l, present_l, notes, strict=True
        )
        return [self.format_one(*args) for args in columns]

    def format_one(
        self,
        ad_id: str,
        raw: Sequence[float],
        scores: Sequence[float],
        breakdown: Sequence[Sequence[float]],
        measurements: Sequence[float],
        presence: Sequence[bool],
        warnings: Sequence[str] = (),
    ) -> Row:
        """One ad's row from its raw scores [P], calibrated scores [P] and calibrated
        breakdown [4, P] (see :meth:`format_batch`): the threshold and the band apply to the
        raw score, ``score`` is the calibrated probability (``raw_score`` beside it when the
        policy has a calibration)."""
        present = {m for m, p in zip(MODALITIES, presence, strict=True) if p}
        policies: dict[str, Any] = {}
        flags = []
        for j, policy in enumerate(self.config.policies):
            applicable = self._modalities_of(policy.heads) & present
            entry: dict[str, Any] = {"threshold": policy.threshold}
            if not applicable:
                entry.update(status="not_applicable", score=None, flag=None, decision=None)
            elif not policy.calibrated:
                entry.update(status="untrained", score=None, flag=None, decision=None)
            else:
                # the raw score as the row shows it decides: recomputed from the row, the
                # decision agrees even within 5e-7 of a threshold
                shown = round(raw[j], 6)
                flag = shown >= policy.threshold
                if policy.band is not None:
                    decision = policy.band.decide(shown)
                else:
                    decision = "block" if flag else "allow"
                entry.update(
                    status="scored", score=round(scores[j], 6), flag=flag, decision=decision
                )
                if policy.calibration is not None:
                    entry["raw_score"] = shown
                if flag:
                    flags.append(policy.name)
            policies[policy.name] = entry
        per_modality = {
            m: {
                p.name: round(breakdown[i][j], 6)
                for j, p in enumerate(self.config.policies)
                if p.calibrated and m in self._modalities_of(p.heads)
            }
            for i, m in enumerate(MODALITIES)
            if m in present
        }
        measured = {
            name: round(value, 6)
            for name, value in zip(self.measurement_names, measurements, strict=True)
            if self.config.modality(name.split(".", 1)[0]) in present
        }
        return {
            "id": ad_id,
            "status": "ok",
            "model": self.model,
            "warnings": list(warnings),
            "decision": ad_decision(e["decision"] for e in policies.values()),
            "flags": flags,
            "policies": policies,
            "modalities": {m: s for m, s in per_modality.items() if s},
            "measurements": measured,
        }


def flatten(result: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row (for CSV / Parquet): the ad's ``decision``, ``<policy>.score``,
    ``<policy>.flag``, ``<policy>.status``, ``<policy>.decision``, measurements."""
    model = result["model"]
    row: dict[str, Any] = {
        "id": result["id"],
        "status": result["status"],
        "model": f"{model['name']} {model['version']}",
        "warnings": "; ".join(result["warnings"]),
    }
    if result["status"] != "ok":
        row["error"] = "; ".join(f"{e['field']}: {e['error']}" for e in result["errors"])
        return row
    row["decision"] = result["decision"]
    row["flags"] = ";".join(result["flags"])
    for name, entry in result["policies"].items():
        row[f"{name}.score"] = entry["score"]
        row[f"{name}.flag"] = entry["flag"]
        row[f"{name}.status"] = entry["status"]
        row[f"{name}.decision"] = entry["decision"]
    row.update(result["measurements"])
    return row
