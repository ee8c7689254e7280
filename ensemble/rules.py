"""Rule heads: deterministic scores from analyzers' named measurements.

Each analyzer type registers a builder that turns a policy's ``rule`` parameters into a
:class:`~ensemble.heads.PolicyHead` whose logits cross 0 (score 0.5) exactly at the standard's
threshold, so the default flag threshold 0.5 is the standard's verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from encoders.base import Encoder
from ensemble.heads import PolicyHead

RuleBuilder = Callable[[Encoder, Sequence[int], Sequence[Mapping[str, Any]]], PolicyHead]
_RULES: dict[str, RuleBuilder] = {}


def register_rule(analyzer_type: str) -> Callable[[RuleBuilder], RuleBuilder]:
    """Decorator registering the rule-head builder of an analyzer registry name."""

    def wrap(builder: RuleBuilder) -> RuleBuilder:
        if analyzer_type in _RULES:
            raise ValueError(f"a rule for analyzer {analyzer_type!r} is already registered")
        _RULES[analyzer_type] = builder
        return builder

    return wrap


def build_rule_head(
    analyzer_type: str,
    encoder: Encoder,
    policy_index: Sequence[int],
    rules: Sequence[Mapping[str, Any]],
) -> PolicyHead:
    """The rule head of an analyzer for the given policies (one ``rule`` mapping each)."""
    if analyzer_type not in _RULES:
        raise KeyError(f"no rule head for analyzer {analyzer_type!r}; known: {sorted(_RULES)}")
    return _RULES[analyzer_type](encoder, policy_index, rules)
