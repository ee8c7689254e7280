"""From graph outputs to result rows: thresholds, flags, withheld untrained scores.

Shared by offline scoring and the TorchServe handler, which knows the model only through its
manifest: everything here is built from the config and the measurement names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from encoders.base import MODALITIES
from ensemble.config import ModelConfig
from ensemble.rows import ModelInfo, Row


@dataclass(frozen=True)
class ResultFormatter:
    """Turns one batch's outputs into one JSON-ready result per ad.

    Args:
        config: The ensemble's config (policies, thresholds, which encoder scores what).
        measurement_names: Names of the measurement columns, ``"<encoder key>.<name>"``.
    """

    config: ModelConfig
    measurement_names: Sequence[str]

    @property
    def model(self) -> ModelInfo:
        """``{"name", "version"}`` of the model, as every result reports it."""
        return {"name": self.config.name, "version": self.config.version}

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
        """Args: ids; scores [B, P]; modality_scores [B, 4, P]; measurements [B, K];
        presence [B, 4]; each ad's warnings. Returns one result row per ad."""
        scores_l = scores.float().cpu().tolist()
        breakdown_l = modality_scores.float().cpu().tolist()
        measured_l = measurements.float().cpu().tolist()
        present_l = presence.cpu().bool().tolist()
        notes = warnings if warnings is not None else [()] * len(ids)
        return [
            self.format_one(*args)
            for args in zip(ids, scores_l, breakdown_l, measured_l, present_l, notes, strict=True)
        ]

    def format_one(
        self,
        ad_id: str,
        scores: Sequence[float],
        breakdown: Sequence[Sequence[float]],
        measurements: Sequence[float],
        presence: Sequence[bool],
        warnings: Sequence[str] = (),
    ) -> Row:
        present = {m for m, p in zip(MODALITIES, presence, strict=True) if p}
        policies: dict[str, Any] = {}
        flags = []
        for j, policy in enumerate(self.config.policies):
            applicable = self._modalities_of(policy.heads) & present
            entry: dict[str, Any] = {"threshold": policy.threshold}
            if not applicable:
                entry.update(status="not_applicable", score=None, flag=None)
            elif not policy.calibrated:
                entry.update(status="untrained", score=None, flag=None)
            else:
                flag = scores[j] >= policy.threshold
                entry.update(status="scored", score=round(scores[j], 6), flag=flag)
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
            "flags": flags,
            "policies": policies,
            "modalities": {m: s for m, s in per_modality.items() if s},
            "measurements": measured,
        }


def flatten(result: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row (for CSV / Parquet): ``<policy>.score``, ``<policy>.flag``, measurements."""
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
    row["flags"] = ";".join(result["flags"])
    for name, entry in result["policies"].items():
        row[f"{name}.score"] = entry["score"]
        row[f"{name}.flag"] = entry["flag"]
        row[f"{name}.status"] = entry["status"]
    row.update(result["measurements"])
    return row
