"""The parent module: every encoder, every head, one fusion, one forward that traces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import MODALITIES, Encoder, PolicyHead
from ensemble.config import ModelConfig
from ensemble.fusion import ABSENT, MaxFusion


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
        config: The config the model was built from; it travels with the model (saving,
            export, preparation) and fixes the policy list.
        encoders: Encoder key -> built encoder. Keys are sorted once; that order fixes the
            graph's inputs.
        heads: Encoder key -> head mapping that encoder's output to policy logits.
        fusion: Combines per-modality policy logits given the presence mask
            (:mod:`ensemble.fusion`); the sigmoid comes after it.

    Forward inputs, positionally (``input_names``):

    1. every encoder's inputs, PACKED per modality: only the rows of the ads that have the
       encoder's modality, ``[rows_<modality>, ...]``. A modality no ad in the batch has is
       0 rows, so its encoders cost nothing: a text ad never pays for a video model.
    2. per modality the model reads (``modalities``), ``index.<modality>`` [batch] int64:
       1 + the ad's row in that modality's packed inputs, 0 when the ad lacks the modality.

    Scores go back to ad order by ``index_select`` (never a sum over rows, so a bad row cannot
    leak into another ad). With every ad given a row (placeholders where absent, index 0) the
    same graph runs at fixed shapes ("dense" batches, for compilers such as Neuron).
    """

    def __init__(
        self,
        config: ModelConfig,
        encoders: Mapping[str, Encoder],
        heads: Mapping[str, PolicyHead],
        fusion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        keys = sorted(encoders)
        if sorted(heads) != keys:
            raise ValueError(f"heads {sorted(heads)} do not match encoders {keys}")
        self.encoders = nn.ModuleDict({k: encoders[k] for k in keys})
        self.heads = nn.ModuleDict({k: heads[k] for k in keys})
        self.fusion = fusion if fusion is not None else MaxFusion()
        self.num_policies = num_policies = len(config.policies)
        self.keys = keys
        self.modality_of = {k: MODALITIES.index(encoders[k].modality) for k in keys}
        self.modalities = [m for m in MODALITIES if any(e.modality == m for e in encoders.values())]
        for k in keys:
            select = F.one_hot(torch.tensor(heads[k].policy_index), num_policies).float()
            self.register_buffer(f"select_{k}", select, persistent=False)
            self.register_buffer(f"unscored_{k}", (1 - select.sum(0)) * ABSENT, persistent=False)
        self.input_names = [f"{k}.{s.name}" for k in keys for s in encoders[k].input_spec]
        self.input_names += [f"index.{m}" for m in self.modalities]
        self.measurement_names = [
            f"{k}.{m}"
            for k in keys
            if encoders[k].kind == "analyzer"
            for m in encoders[k].measurement_names
        ]

    def forward(self, *inputs: Tensor) -> EnsembleOutput:
        """Args: the tensors named by ``input_names``. Returns EnsembleOutput, batch first."""
        count = len(self.modalities)
        index = dict(zip(self.modalities, inputs[len(inputs) - count :], strict=True))
        # zeros_like, expand, index_select, cat, max and sigmoid: operators AWS Neuron
        # lists as supported; no device or batch size baked into the traced graph
        zeros = torch.zeros_like(index[self.modalities[0]], dtype=torch.float32)
        presence = torch.stack(
            [(index[m] > 0).float() if m in index else zeros for m in MODALITIES], dim=1
        )
        absent = (zeros + ABSENT).unsqueeze(1).expand(-1, self.num_policies)
        per_modality = [absent for _ in MODALITIES]
        measurements = []
        position = 0
        for key in self.keys:
            encoder: Encoder = self.encoders[key]  # type: ignore[assignment]
            size = len(encoder.input_spec)
            features = encoder(*inputs[position : position + size])
            position += size
            rows = index[encoder.modality]
            if encoder.kind == "analyzer":
                measurements.append(_to_ads(features.float(), rows))
            logits = _to_ads(self.policy_logits(key, features), rows)
            m = self.modality_of[key]
            per_modality[m] = torch.max(per_modality[m], logits)
        fused, breakdown = self.fusion(torch.stack(per_modality, dim=1), presence)
        measured = torch.cat(measurements, dim=1) if measurements else presence[:, :0]
        return EnsembleOutput(torch.sigmoid(fused), torch.sigmoid(breakdown), measured)

    def policy_logits(self, key: str, features: Tensor) -> Tensor:
        """Encoder ``key``'s head on its features, in the ensemble's policy columns
        (:func:`scatter_policies`).

        Args:
            features: [rows, output_dim] of encoder ``key``.

        Returns:
            [rows, policies] float32 logits.
        """
        select, unscored = getattr(self, f"select_{key}"), getattr(self, f"unscored_{key}")
        return scatter_policies(self.heads[key](features), select, unscored)

    def example_inputs(self, batch_size: int, presence: Tensor | None = None) -> tuple[Tensor, ...]:
        """Random inputs, packed by ``presence``.

        Args:
            batch_size: Number of ads.
            presence: [batch_size, 4] bool, which ad has which modality; default all.
        """
        if presence is None:
            presence = torch.ones(batch_size, len(MODALITIES), dtype=torch.bool)
        parts: list[Tensor] = []
        for key in self.keys:
            encoder: Encoder = self.encoders[key]  # type: ignore[assignment]
            rows = int(presence[:, self.modality_of[key]].sum())
            parts.extend(encoder.example_inputs(max(rows, encoder.min_rows)))
        parts.extend(rows_index(presence[:, MODALITIES.index(m)]) for m in self.modalities)
        return tuple(parts)


def scatter_policies(logits: Tensor, select: Tensor, unscored: Tensor) -> Tensor:
    """A head's logits in the ensemble's policy columns.

    Args:
        logits: [rows, head outputs].
        select: [head outputs, policies] float one-hot of the head's ``policy_index``.
        unscored: [policies], :data:`~ensemble.fusion.ABSENT` in the columns the head does
            not score, 0 elsewhere.

    Returns:
        [rows, policies] float32.
    """
    scattered: Tensor = logits.float() @ select
    return scattered + unscored


def rows_index(present: Tensor) -> Tensor:
    """``index.<modality>`` for a presence column: 1 + the packed row of each ad, else 0.

    Args:
        present: [batch] bool.

    Returns:
        [batch] int64.
    """
    present = present.bool()
    return torch.cumsum(present.long(), dim=0) * present.long()


def _to_ads(rows: Tensor, index: Tensor) -> Tensor:
    """Rows of a packed modality back in ad order, zeros for ads without it.

    Args:
        rows: [rows, width] per packed row.
        index: [batch] int64, 1 + row or 0.

    Returns:
        [batch, width].
    """
    padded = torch.cat([torch.zeros_like(rows[:1].sum(0, keepdim=True)), rows])
    return torch.index_select(padded, 0, index)
