"""The trainable view of an ensemble: its learned heads, as fused policy LOGITS.

The ensemble returns probabilities: per head ``sigmoid(logits)``, the maximum per modality,
then :class:`~ensemble.fusion.MaxFusion` over the present modalities. As the sigmoid is
monotonic, that equals ``sigmoid`` of the maximum LOGIT over the present heads, which is what
this view returns, so training can use the numerically stable ``BCEWithLogits`` on exactly the
score the ensemble serves (a test checks the two agree). It shares the ensemble's head modules
(and the encoders being fine-tuned), so training it trains the ensemble.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import MODALITIES, Encoder
from ensemble.fusion import MaxFusion
from ensemble.model import AdPolicyEnsemble
from ensemble.training.features import learned_keys, trim_padding


class FusedLogits(nn.Module):
    """Learned heads (and fine-tuned encoders) of an ensemble -> fused policy logits.

    Args:
        model: The ensemble; its fusion must be :class:`~ensemble.fusion.MaxFusion`.
        live: Keys of the learned encoders run here on prepared inputs (fine-tuning); the
            other learned encoders' frozen embeddings are given (cached), and their
            ``head_trained`` parts (e.g. the text lexicon) run here and train with the heads.

    Forward:
        inputs: Key -> tensors: for a live key its prepared inputs in ``input_spec`` order,
            for any other learned key ``[frozen embedding [batch, frozen_dim]]``, followed
            by its prepared inputs where it has ``head_trained`` parts (``partial``).
        presence: [batch, 4] float.
        Returns (logits [batch, policies], applicable [batch, policies] bool): applicable where
        a present learned head scores the policy (elsewhere the logit is 0 and meaningless).
    """

    def __init__(self, model: AdPolicyEnsemble, live: Sequence[str] = ()) -> None:
        super().__init__()
        if not isinstance(model.fusion, MaxFusion):
            raise NotImplementedError(
                f"training supports MaxFusion, not {type(model.fusion).__name__}"
            )
        self.keys = learned_keys(model)
        unknown = sorted(set(live) - set(self.keys))
        if unknown:
            raise ValueError(f"cannot fine-tune {unknown}: learned encoders are {self.keys}")
        self.num_policies = model.num_policies
        self.heads = nn.ModuleDict({k: model.heads[k] for k in self.keys})
        self.live = nn.ModuleDict({k: model.encoders[k] for k in live})
        encoders: dict[str, Encoder] = {k: model.encoders[k] for k in self.keys}  # type: ignore[misc]
        self.partial = {k: e for k, e in encoders.items() if e.head_trained and k not in live}
        self.branches = nn.ModuleDict(
            {
                k: nn.ModuleDict({name: getattr(e, name) for name in e.head_trained})
                for k, e in self.partial.items()
            }
        )
        self.modality_of = {k: MODALITIES.index(model.encoders[k].modality) for k in self.keys}
        for k in self.keys:
            index = torch.tensor(model.heads[k].policy_index)
            self.register_buffer(
                f"select_{k}", F.one_hot(index, self.num_policies).bool(), persistent=False
            )

    @property
    def prepared_encoders(self) -> dict[str, Encoder]:
        """Key -> encoder of the keys whose prepared inputs ``forward`` needs (live, partial)."""
        live: dict[str, Encoder] = dict(self.live.items())  # type: ignore[arg-type]
        return {**live, **self.partial}

    @property
    def policy_columns(self) -> Tensor:
        """[policies] bool: the policies some learned head scores."""
        return torch.stack([getattr(self, f"select_{k}").any(0) for k in self.keys]).any(0)

    def forward(
        self, inputs: Mapping[str, Sequence[Tensor]], presence: Tensor
    ) -> tuple[Tensor, Tensor]:
        """See the class docstring."""
        lowest = torch.finfo(presence.dtype).min
        fused = torch.full((presence.shape[0], self.num_policies), lowest, device=presence.device)
        applicable = torch.zeros_like(fused, dtype=torch.bool)
        for key in self.keys:
            if key in self.live:
                encoder: Encoder = self.live[key]  # type: ignore[assignment]
                features = encoder(*trim_padding(inputs[key], encoder.input_spec))
            elif key in self.partial:
                part = self.partial[key]
                prepared = trim_padding(inputs[key][1:], part.input_spec)
                features = part.with_head_trained(inputs[key][0], *prepared)
            else:
                features = inputs[key][0]
            select: Tensor = getattr(self, f"select_{key}")  # [head outputs, policies]
            logits = self.heads[key](features).float() @ select.float()
            scored = (presence[:, self.modality_of[key], None] > 0) & select.any(0)
            fused = torch.where(scored, torch.maximum(fused, logits), fused)
            applicable = applicable | scored
        return torch.where(applicable, fused, torch.zeros_like(fused)), applicable
