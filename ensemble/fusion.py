"""Decision-level, mask-aware fusion of per-modality policy LOGITS.

A fusion module is a plug: the ensemble hands it ``[batch, modalities, policies]`` logits (a
policy a modality does not score, or a modality the ad lacks, holds :data:`ABSENT`) and the
presence mask, and takes the sigmoid of what it returns last. Training calls the same module on
the learned heads' logits (:class:`ensemble.training.trainable.FusedLogits`), so a fusion with
parameters (a learned combiner over the per-modality logits) trains like any head.
"""

from __future__ import annotations

from torch import Tensor, nn

# The logit of "no score": sigmoid(-1e4) is exactly 0 in float32, and -1e4 fits in fp16 and
# bf16, so the graph needs no -inf (which some accelerator compilers mishandle).
ABSENT = -1e4


def mask_absent(modality_logits: Tensor, presence: Tensor) -> Tensor:
    """``modality_logits`` where the ad has the modality, :data:`ABSENT` elsewhere.

    Args:
        modality_logits: [batch, modalities, policies].
        presence: [batch, modalities], 1 where the ad has that modality, else 0.
    """
    present = presence.unsqueeze(-1)
    return modality_logits * present + ABSENT * (1 - present)


class MaxFusion(nn.Module):
    """A policy's logit is the highest logit among the PRESENT modalities that score it.

    An ad breaks a policy if any of its parts does; the maximum keeps each head's calibration
    (unlike a sum or a noisy-OR) and lets reviewers see which part triggered a flag. As the
    sigmoid is monotonic, the served score is the highest per-modality score.
    """

    def forward(self, modality_logits: Tensor, presence: Tensor) -> tuple[Tensor, Tensor]:
        """Args:
            modality_logits: [batch, modalities, policies], :data:`ABSENT` where no head
                scores.
            presence: [batch, modalities], 1 where the ad has that modality.

        Returns:
            fused logits [batch, policies] and the masked breakdown [batch, modalities,
            policies] (:data:`ABSENT` where a modality is absent or scores nothing).
        """
        masked = mask_absent(modality_logits, presence)
        return masked.amax(dim=1), masked
