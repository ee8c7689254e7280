"""The model configuration: encoders by registry name and settings, policies, media limits.

A configuration is data (YAML or JSON). It is what ``save_pretrained`` writes, what the export
manifest embeds, and all the TorchServe handler needs to rebuild the preparation.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from encoders.media import MediaLimits
from encoders.registry import get_entry
from ensemble.decisions import Band, Calibration

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Policy:
    """One content policy.

    Attributes:
        name: Policy name, e.g. ``"hate_speech"``.
        heads: Keys of the encoders whose heads score it; the policy's score is the fusion of
            the present ones.
        threshold: Raw score (the graph's) at or above which the ad is flagged.
        calibrated: False while a learned head is untrained: its number is then never shown
            (trained, not :attr:`calibration`).
        description: What the policy forbids.
        rule: Parameters of the rule heads of analyzers (e.g. a loudness target).
        calibration: The map from the graph's raw score to the probability rows report
            (``adpolicy calibrate``); None: the raw score.
        band: Allow / review / block thresholds on the raw score; None: the single
            threshold decides (flagged: block, else allow).
    """

    name: str
    heads: tuple[str, ...]
    threshold: float = 0.5
    calibrated: bool = False
    description: str = ""
    rule: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    band: Band | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"policy {data.get('name')!r}: unknown keys {sorted(unknown)}")
        try:
            calibration = data.get("calibration")
            band = data.get("band")
            return cls(
                **{
                    **data,
                    "heads": tuple(data["heads"]),
                    "rule": dict(data.get("rule", {})),
                    "calibration": None
                    if calibration is None
                    else Calibration.from_json(calibration),
                    "band": None if band is None else Band.from_json(band),
                }
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"policy {data.get('name')!r}: {err}") from None

    def __post_init__(self) -> None:
        """Refuse fields of the wrong type: ``calibrated: "false"`` read as true and showed an
        untrained head's scores; a threshold ``"0.5"`` failed only at scoring time."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name {self.name!r}: a non-empty string")
        if not all(isinstance(h, str) for h in self.heads):
            raise ValueError(f"heads {list(self.heads)!r}: encoder keys (strings)")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise ValueError(f"threshold {self.threshold!r}: a number in [0, 1]")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold!r}: a score in [0, 1]")
        if not isinstance(self.calibrated, bool):
            raise ValueError(f"calibrated {self.calibrated!r}: true or false (not a string)")
        if not isinstance(self.description, str):
            raise ValueError(f"description {self.description!r}: a string")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["heads"] = list(self.heads)
        out["rule"] = dict(self.rule)
        out["calibration"] = None if self.calibration is None else self.calibration.to_json()
        out["band"] = None if self.band is None else self.band.to_json()
        return out

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """The probabilities rows report for raw ``scores`` (any shape), float64."""
        scores = np.asarray(scores, dtype=np.float64)
        return scores if self.calibration is None else self.calibration(scores)

    def decision_summary(self) -> dict[str, Any]:
        """How the policy decides: its band's method and guarantee, or ``"threshold"``."""
        if self.band is None:
            return {"method": "threshold"}
        return self.band.summary()


@dataclass(frozen=True)
class EncoderConfig:
    """An encoder of the ensemble: a registry name and its full settings."""

    type: str
    settings: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EncoderConfig:
        """``{"type": name, **settings}``; settings are completed with the entry's defaults."""
        data = dict(data)
        name = data.pop("type")
        entry = get_entry(name)
        return cls(name, dataclasses.asdict(entry.make_settings(**data)))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.settings}

    def make_settings(self) -> Any:
        return get_entry(self.type).make_settings(**self.settings)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an ensemble (its weights aside).

    Attributes:
        name: Model name.
        version: Model version, reported with every score.
        encoders: Encoder key -> encoder config; keys are sorted once, as the graph's order.
        policies: Ordered policies; the order of the score columns.
        limits: Media limits applied by the preparation.
        head_hidden: Hidden width of the learned heads (0: a linear probe).
        head_dropout: Dropout of the learned heads while training.
    """

    name: str
    version: str
    encoders: Mapping[str, EncoderConfig]
    policies: tuple[Policy, ...]
    limits: MediaLimits = field(default_factory=MediaLimits)
    head_hidden: int = 0
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate policy names in {names}")
        for policy in self.policies:
            missing = [k for k in policy.heads if k not in self.encoders]
            if missing or not policy.heads:
                raise ValueError(
                    f"policy {policy.name!r}: heads {missing or '[]'} name no encoder "
                    f"(encoders: {sorted(self.encoders)})"
                )
        for key in self.encoders:
            if not any(key in p.heads for p in self.policies):
                raise ValueError(f"encoder {key!r} scores no policy; remove it or give it one")

    @property
    def policy_names(self) -> list[str]:
        return [p.name for p in self.policies]

    def modality(self, key: str) -> str:
        return get_entry(self.encoders[key].type).modality

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Read a config; a missing, unknown (a typo: ``head_hiden`` was ignored and the
        heads came out linear) or ill-typed key is a ValueError naming it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a mapping of keys, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - fields):
            raise ValueError(f"config: unknown keys {unknown}; accepted: {sorted(fields)}")
        if missing := [k for k in ("name", "version", "encoders", "policies") if k not in data]:
            raise ValueError(f"config: missing {missing}")
        limits = data.get("limits", {})
        known = {f.name for f in dataclasses.fields(MediaLimits)}
        if unknown := sorted(set(limits) - known):
            raise ValueError(f"config: limits: unknown keys {unknown}; accepted: {sorted(known)}")
        hidden, dropout = data.get("head_hidden", 0), data.get("head_dropout", 0.1)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"config: head_hidden {hidden!r}: a whole number of at least 0")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float):
            raise ValueError(f"config: head_dropout {dropout!r}: a number in [0, 1)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"config: head_dropout {dropout!r}: a number in [0, 1)")
        return cls(
            name=data["name"],
            version=str(data["version"]),
            encoders={k: EncoderConfig.from_json(v) for k, v in sorted(data["encoders"].items())},
            policies=tuple(Policy.from_json(p) for p in data["policies"]),
            limits=MediaLimits(**limits),
            head_hidden=hidden,
            head_dropout=float(dropout),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "encoders": {k: v.to_json() for k, v in self.encoders.items()},
            "policies": [p.to_json() for p in self.policies],
            "limits": dataclasses.asdict(self.limits),
            "head_hidden": self.head_hidden,
            "head_dropout": self.head_dropout,
        }

    def with_policies(self, policies: tuple[Policy, ...]) -> ModelConfig:
        return dataclasses.replace(self, policies=policies)

    def with_encoder(self, key: str, encoder: EncoderConfig) -> ModelConfig:
        return dataclasses.replace(self, encoders={**self.encoders, key: encoder})


def load_config(path: str | Path) -> ModelConfig:
    """Read a model config from YAML or JSON; a bare name reads ``ensemble/configs/NAME.yaml``."""
    given = Path(path)
    path = given
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{path}.yaml"
    if path.is_dir():
        raise IsADirectoryError(
            f"{given} is a directory: a config is a YAML or JSON file (to continue a "
            "checkpoint, give it to --init)"
        )
    if not path.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"{given}: no such checkpoint directory, config file or config name ({names})"
        )
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return ModelConfig.from_json(data)
