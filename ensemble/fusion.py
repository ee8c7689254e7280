"""Decision-level, mask-aware fusion of per-modality policy scores."""

from __future__ import annotations

from torch import Tensor, nn


class MaxFusion(nn.Module):
    """A policy's score is the highest score among the PRESENT modalities that score it.

    An ad breaks a policy if any of its parts does; the maximum keeps each head's calibration
    (unlike a sum or a noisy-OR) and lets reviewers see which part triggered a flag.
    """

    def forward(self, modality_scores: Tensor, presence: Tensor) -> tuple[Tensor, Tensor]:
        """Args:
            modality_scores: [batch, modalities, policies] in [0, 1], 0 where no head scores.
            presence: [batch, modalities], 1 where the ad has that modality.

        Returns:
            scores [batch, policies] and the masked breakdown [batch, modalities, policies].
        """
        masked = modality_scores * presence.unsqueeze(-1)
        return masked.amax(dim=1), masked
