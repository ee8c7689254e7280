"""The trainable view of an ensemble: its learned heads, as fused policy LOGITS.

The ensemble fuses per-modality logits with its own fusion module and takes the sigmoid last;
this view runs the same heads (:meth:`~ensemble.model.AdPolicyEnsemble.policy_logits`) and the
same fusion module on the learned heads' logits and stops before the sigmoid, so training can
use the numerically stable ``BCEWithLogits`` on exactly the score the ensemble serves (a test
checks the two agree). It shares the ensemble's head modules, its fusion (a fusion with
parameters trains with the heads) and the encoders being fine-tuned, so training it trains the
ensemble.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from encoders.base import MODALITIES, Encoder
from ensemble.fusion import ABSENT
from ensemble.model import AdPolicyEnsemble, scatter_policies
from ensemble.training.features import learned_keys, trim_padding


class FusedLogits(nn.Module):
    """Learned heads (and fine-tuned encoders) of an ensemble -> fused policy logits.

    Args:
        model: The ensemble.
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
        self.fusion = model.fusion
        for k in self.keys:
            for buffer in ("select", "unscored"):
                name = f"{buffer}_{k}"
                self.register_buffer(name, getattr(model, name).clone(), persistent=False)

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
        absent = torch.full((presence.shape[0], self.num_policies), ABSENT, device=presence.device)
        per_modality = [absent for _ in MODALITIES]
        applicable = torch.zeros_like(absent, dtype=torch.bool)
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
            m = self.modality_of[key]
            select, unscored = getattr(self, f"select_{key}"), getattr(self, f"unscored_{key}")
            logits = scatter_policies(self.heads[key](features), select, unscored)
            per_modality[m] = torch.maximum(per_modality[m], logits)
            applicable = applicable | ((presence[:, m, None] > 0) & (select.sum(0) > 0))
        fused, _ = self.fusion(torch.stack(per_modality, dim=1), presence)
        return torch.where(applicable, fused, torch.zeros_like(fused)), applicable
