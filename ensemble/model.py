"""The parent module: every encoder, every head, one fusion, one forward that traces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import MODALITIES, Encoder
from ensemble.fusion import MaxFusion
from ensemble.heads import PolicyHead

if TYPE_CHECKING:
    from ensemble.config import ModelConfig


class EnsembleOutput(NamedTuple):
    """What the ensemble returns (a traced graph returns the same three, as a tuple).

    Attributes:
        scores: [batch, policies] in [0, 1], in the order of the policy list.
        modality_scores: [batch, modalities, policies], the breakdown per modality
            (``encoders.MODALITIES`` order), 0 where a modality is absent or scores nothing.
        measurements: [batch, measurements], the analyzers' named measurements
            (``AdPolicyEnsemble.measurement_names``).
    """

    scores: Tensor
    modality_scores: Tensor
    measurements: Tensor


class AdPolicyEnsemble(nn.Module):
    """Encoders (learned and analyzers) + one head per encoder + mask-aware fusion.

    Args:
        encoders: Encoder key -> built encoder. Keys are sorted once; that order fixes the
            graph's inputs.
        heads: Encoder key -> head mapping that encoder's output to policy logits.
        num_policies: Length of the policy list the heads' ``policy_index`` refer to.
        fusion: Combines per-modality scores given the presence mask.

    Forward inputs, positionally: every encoder's inputs in ``input_names`` order, then
    ``presence`` [batch, 4] (float, 1 where the ad has the modality).
    """

    config: ModelConfig | None = None  # attached by the builder; used to save and export

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        heads: Mapping[str, PolicyHead],
        num_policies: int,
        fusion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        keys = sorted(encoders)
        if sorted(heads) != keys:
            raise ValueError(f"heads {sorted(heads)} do not match encoders {keys}")
        self.encoders = nn.ModuleDict({k: encoders[k] for k in keys})
        self.heads = nn.ModuleDict({k: heads[k] for k in keys})
        self.fusion = fusion if fusion is not None else MaxFusion()
        self.num_policies = num_policies
        self.keys = keys
        self.modality_of = {k: MODALITIES.index(encoders[k].modality) for k in keys}
        for k in keys:
            index = torch.tensor(heads[k].policy_index)
            self.register_buffer(
                f"select_{k}", F.one_hot(index, num_policies).float(), persistent=False
            )
        self.input_names = [f"{k}.{s.name}" for k in keys for s in encoders[k].input_spec]
        self.input_names.append("presence")
        self.measurement_names = [
            f"{k}.{m}"
            for k in keys
            if encoders[k].kind == "analyzer"
            for m in encoders[k].measurement_names
        ]

    def forward(self, *inputs: Tensor) -> EnsembleOutput:
        """Args: the tensors named by ``input_names``, batch first. Returns EnsembleOutput."""
        presence = inputs[-1]
        # zeros_like, expand, slice and max rather than new_zeros and maximum: the operators
        # AWS Neuron lists as supported, and no device baked into the traced graph
        zeros = torch.zeros_like(presence[:, :1]).expand(-1, self.num_policies)
        per_modality = [zeros for _ in MODALITIES]
        measurements = []
        position = 0
        for key in self.keys:
            encoder: Encoder = self.encoders[key]  # type: ignore[assignment]
            count = len(encoder.input_spec)
            features = encoder(*inputs[position : position + count])
            position += count
            if encoder.kind == "analyzer":
                measurements.append(features.float())
            logits = self.heads[key](features).float()
            scores = torch.sigmoid(logits) @ getattr(self, f"select_{key}")
            m = self.modality_of[key]
            per_modality[m] = torch.max(per_modality[m], scores)
        fused, breakdown = self.fusion(torch.stack(per_modality, dim=1), presence)
        measured = torch.cat(measurements, dim=1) if measurements else presence[:, :0]
        return EnsembleOutput(fused, breakdown, measured)

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        """Random inputs for every encoder and an all-present mask."""
        parts: list[Tensor] = []
        for key in self.keys:
            encoder: Encoder = self.encoders[key]  # type: ignore[assignment]
            parts.extend(encoder.example_inputs(batch_size))
        parts.append(torch.ones(batch_size, len(MODALITIES)))
        return tuple(parts)
