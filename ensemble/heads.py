"""Learned heads: each maps one encoder's embedding to logits for the policies it scores."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from encoders.base import PolicyHead


class LinearHead(PolicyHead):
    """Learned head: one logit per policy from an embedding.

    Args:
        in_dim: Width of the encoder's embedding (its ``output_dim``).
        policy_index: Columns of the policies this head scores.
        hidden: Width of a hidden layer; 0 for a linear probe.
        dropout: Dropout before the output layer (training only).
    """

    def __init__(
        self, in_dim: int, policy_index: Sequence[int], *, hidden: int = 0, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.policy_index = tuple(policy_index)
        out = len(self.policy_index)
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out))

    def forward(self, features: Tensor) -> Tensor:
        """Args: features [batch, in_dim]. Returns logits [batch, len(policy_index)]."""
        out: Tensor = self.net(features)
        return out
