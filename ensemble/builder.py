"""Build an :class:`AdPolicyEnsemble` from a :class:`ModelConfig` (strings end here)."""

from __future__ import annotations

import torch

from encoders.base import Encoder
from encoders.registry import get_entry
from ensemble.config import ModelConfig
from ensemble.heads import LinearHead, PolicyHead
from ensemble.model import AdPolicyEnsemble
from ensemble.rules import build_rule_head


def build_encoders(config: ModelConfig) -> dict[str, Encoder]:
    """Every encoder of the config, built by its registry entry."""
    return {
        key: get_entry(enc.type).build(enc.make_settings()) for key, enc in config.encoders.items()
    }


def build_heads(config: ModelConfig, encoders: dict[str, Encoder]) -> dict[str, PolicyHead]:
    """One head per encoder: a learned head, or the analyzer's rule head."""
    heads: dict[str, PolicyHead] = {}
    for key, encoder in encoders.items():
        index = [i for i, p in enumerate(config.policies) if key in p.heads]
        if encoder.kind == "analyzer":
            rules = [config.policies[i].rule for i in index]
            heads[key] = build_rule_head(config.encoders[key].type, encoder, index, rules)
        else:
            heads[key] = LinearHead(
                encoder.output_dim, index, hidden=config.head_hidden, dropout=config.head_dropout
            )
    return heads


def build_ensemble(config: ModelConfig, *, seed: int = 0) -> AdPolicyEnsemble:
    """The ensemble a config describes, heads initialised from ``seed``, in eval mode.

    The config stays attached as ``model.config`` for ``save_pretrained`` and export.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoders = build_encoders(config)
        heads = build_heads(config, encoders)
    model = AdPolicyEnsemble(encoders, heads, len(config.policies))
    model.config = config
    return model.eval()
