"""Build an :class:`AdPolicyEnsemble` from a :class:`ModelConfig` (strings end here)."""

from __future__ import annotations

import dataclasses
from typing import cast

import torch

from encoders.base import Encoder, PolicyHead
from encoders.registry import get_entry
from ensemble.config import ModelConfig
from ensemble.heads import LinearHead
from ensemble.model import AdPolicyEnsemble


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
        rule = get_entry(config.encoders[key].type).rule
        if rule is not None:
            heads[key] = rule(encoder, index, [config.policies[i].rule for i in index])
        else:
            heads[key] = LinearHead(
                encoder.output_dim, index, hidden=config.head_hidden, dropout=config.head_dropout
            )
    return heads


def build_ensemble(config: ModelConfig, *, seed: int = 0) -> AdPolicyEnsemble:
    """The ensemble a config describes (``model.config``), heads initialised from ``seed``,
    in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoders = build_encoders(config)
        heads = build_heads(config, encoders)
    return AdPolicyEnsemble(config, encoders, heads).eval()


def modality_config(config: ModelConfig, modality: str) -> ModelConfig:
    """The part of ``config`` that scores ``modality``: that modality's encoders, and the
    policies their heads score (each keeping only those heads), in the same order.

    Raises:
        ValueError: No encoder of the config reads ``modality``.
    """
    encoders = {k: enc for k, enc in config.encoders.items() if config.modality(k) == modality}
    if not encoders:
        raise ValueError(f"no encoder of {config.name!r} reads {modality!r}")
    policies = tuple(
        dataclasses.replace(p, heads=tuple(h for h in p.heads if h in encoders))
        for p in config.policies
        if encoders.keys() & set(p.heads)
    )
    return dataclasses.replace(
        config, name=f"{config.name}-{modality}", encoders=encoders, policies=policies
    )


def modality_ensemble(model: AdPolicyEnsemble, modality: str) -> AdPolicyEnsemble:
    """The ensemble of :func:`modality_config`, with ``model``'s weights for the encoders and
    heads it keeps: on ads of that modality alone it scores its policies as ``model`` does
    (an archive per modality, as a service split by modality deploys it)."""
    config = modality_config(model.config, modality)
    part = build_ensemble(config)
    state = model.state_dict()
    part.load_state_dict({k: state[k] for k in part.state_dict()}, strict=True)
    return part.eval()


def check_matches_config(model: AdPolicyEnsemble) -> None:
    """Refuse a model whose modules are not what ``model.config`` builds: an encoder of
    another class than its config type's, or a head of other shapes (a submodule swapped in
    Python after building). Saved, its config would rebuild another model that its weights
    do not fit, or fit and score differently.

    Raises:
        ValueError: Naming the encoder key and what differs.
    """
    config = model.config
    how = "swap it in the config (config.with_encoder, then build_ensemble) and load the weights"
    for key, enc in config.encoders.items():
        expected, found = get_entry(enc.type).cls, type(model.encoders[key])
        if found is not expected:
            raise ValueError(
                f"encoder {key!r} is a {found.__name__}, but the config builds {enc.type!r} "
                f"({expected.__name__}): {how}"
            )
    encoders = cast(dict[str, Encoder], dict(model.encoders.items()))
    with torch.random.fork_rng():  # building heads draws weights: leave the caller's RNG be
        expected_heads = build_heads(config, encoders)
    for key, head in expected_heads.items():
        want = {n: tuple(t.shape) for n, t in head.state_dict().items()}
        have = {n: tuple(t.shape) for n, t in model.heads[key].state_dict().items()}
        if want != have or type(head) is not type(model.heads[key]):
            raise ValueError(
                f"the head of encoder {key!r} is not the one the config builds (head_hidden "
                f"{config.head_hidden}, {type(head).__name__}): {how}"
            )
