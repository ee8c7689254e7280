"""From raw ads to batch tensors: ONE preparation path for scoring, training and serving.

An ad is a mapping with an optional ``id`` and any of ``text``, ``image``, ``audio``,
``video``. Each present field is decoded once and handed to every encoder of its modality;
an absent one gets no row in that modality's packed inputs (or, in a dense batch, the
encoders' placeholders) and a 0 in the ad's ``index.<modality>``. A bad field
raises :class:`AdError` listing every problem, each naming its field.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ImageStat
from torch import Tensor

from encoders.base import MODALITIES, InputError
from encoders.media import (
    MediaLimits,
    VideoPreparer,
    decode_audio,
    decode_image,
    decode_video,
    read_media,
)
from encoders.registry import get_entry
from ensemble.config import ModelConfig
from ensemble.model import rows_index

AD_FIELDS = ("id", *MODALITIES)
PASSTHROUGH_FIELDS = ("labels", "meta")


class AdError(ValueError):
    """Every problem of one ad; ``errors`` holds one :class:`InputError` per bad field."""

    def __init__(self, errors: Sequence[InputError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)

    @property
    def status(self) -> int:
        """The HTTP status for the ad: 413 when any field is too large, else the first one's."""
        codes = [e.status for e in self.errors]
        return 413 if 413 in codes else codes[0]

    def to_json(self) -> list[dict[str, str]]:
        return [{"field": e.field, "error": e.problem} for e in self.errors]


@dataclass
class PreparedAd:
    """One ad ready to batch.

    Attributes:
        id: The ad's id (``"#N"`` from its position when it has none).
        tensors: Input name (``"<encoder key>.<input>"``) -> tensor, present modalities only.
        presence: One flag per modality, in ``MODALITIES`` order.
        stats: Cheap input statistics (sizes, durations) for monitoring.
    """

    id: str
    tensors: dict[str, Tensor]
    presence: tuple[bool, ...]
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class AdBatch:
    """Prepared ads stacked for the graph.

    Attributes:
        ids: Ad ids, in batch order.
        inputs: Tensors in the graph's input order (see ``AdPolicyEnsemble``).
        presence: [batch, 4] float, 1 where the ad has the modality (``MODALITIES`` order).
        stats: Each ad's input statistics.
    """

    ids: list[str]
    inputs: tuple[Tensor, ...]
    presence: Tensor
    stats: list[dict[str, float]]

    def to(self, device: torch.device | str) -> tuple[Tensor, ...]:
        return tuple(t.to(device) for t in self.inputs)


class AdPreparer:
    """Prepares ads for an ensemble of a given config (no model weights needed).

    Args:
        config: The ensemble's config; its encoders' registry entries supply the preparers.
        allow_paths: Whether media fields may be file paths (False on a server).
        overrides: Encoder key -> settings to replace (e.g. the tokenizer directory inside a
            TorchServe archive).
        dense: Collate dense batches by default (graphs compiled for fixed shapes).
        keys: Prepare only these encoders' inputs (default: every encoder's). Training uses
            it to skip the analyzers, whose dense placeholders (60 s of video grids) would
            dwarf a text batch.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        allow_paths: bool = True,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        dense: bool = False,
        keys: Collection[str] | None = None,
    ) -> None:
        self.dense = dense
        self.limits: MediaLimits = config.limits
        self.allow_paths = allow_paths
        self.preparers: dict[str, list[tuple[str, Any]]] = {m: [] for m in MODALITIES}
        placeholders: dict[str, Tensor] = {}
        modality_of: dict[str, str] = {}
        for key, enc in sorted(config.encoders.items()):
            if keys is not None and key not in keys:
                continue
            entry = get_entry(enc.type)
            settings = {**enc.settings, **(overrides or {}).get(key, {})}
            preparer = entry.preparer(entry.make_settings(**settings))
            self.preparers[entry.modality].append((key, preparer))
            for name, tensor in preparer.placeholder().items():
                placeholders[f"{key}.{name}"] = tensor
                modality_of[f"{key}.{name}"] = entry.modality
        self.placeholders = placeholders
        self.modality_of = modality_of
        self.modalities = [m for m in MODALITIES if self.preparers[m]]
        self.input_names = [*placeholders, *(f"index.{m}" for m in self.modalities)]

    def prepare(self, ad: Any, *, index: int = 0, base_dir: Path | None = None) -> PreparedAd:
        """Prepare one ad; raises :class:`AdError` naming every bad field."""
        if not isinstance(ad, Mapping):
            raise AdError([InputError("ad", f"expected a JSON object, got {type(ad).__name__}")])
        errors: list[InputError] = []
        ad_id = ad.get("id", f"#{index}")
        if not isinstance(ad_id, str | int) or isinstance(ad_id, bool):
            errors.append(
                InputError("id", f"expected a string or integer, got {type(ad_id).__name__}")
            )
            ad_id = f"#{index}"
        unknown = set(ad) - set(AD_FIELDS) - set(PASSTHROUGH_FIELDS)
        if unknown:
            errors.append(
                InputError(sorted(unknown)[0], f"unknown field; accepted: {', '.join(AD_FIELDS)}")
            )
        tensors: dict[str, Tensor] = {}
        stats: dict[str, float] = {}
        present = [m for m in MODALITIES if ad.get(m) not in (None, "")]
        if not present:
            errors.append(InputError("ad", "no text, image, audio or video field"))
        for modality in present:
            try:
                self._prepare_field(modality, ad[modality], base_dir, tensors, stats)
            except InputError as err:
                errors.append(err)
        if errors:
            raise AdError(errors)
        presence = tuple(m in present and bool(self.preparers[m]) for m in MODALITIES)
        return PreparedAd(str(ad_id), tensors, presence, stats)

    def _prepare_field(
        self,
        modality: str,
        value: Any,
        base_dir: Path | None,
        tensors: dict[str, Tensor],
        stats: dict[str, float],
    ) -> None:
        preparers = self.preparers[modality]
        if modality == "text":
            if not isinstance(value, str):
                raise InputError("text", f"expected a string, got {type(value).__name__}")
            if len(value) > self.limits.max_text_chars:
                raise InputError(
                    "text",
                    f"{len(value)} characters exceeds the limit of {self.limits.max_text_chars}",
                )
            outputs = [p.prepare(value) for _, p in preparers]
            stats["text_chars"] = float(len(value))
            masks = [out["attention_mask"] for out in outputs if "attention_mask" in out]
            if masks:
                stats["text_tokens"] = float(masks[0].sum())
        else:
            data = read_media(
                value, modality, base_dir=base_dir, allow_paths=self.allow_paths, limits=self.limits
            )
            outputs = self._decode(modality, data, [p for _, p in preparers], stats)
        for (key, _), out in zip(preparers, outputs, strict=True):
            tensors.update({f"{key}.{name}": t for name, t in out.items()})

    def _decode(
        self, modality: str, data: bytes, preparers: list[Any], stats: dict[str, float]
    ) -> list[dict[str, Tensor]]:
        if modality == "image":
            image = decode_image(data, self.limits)
            stats.update(
                image_width=float(image.width),
                image_height=float(image.height),
                image_brightness=float(ImageStat.Stat(image.convert("L")).mean[0]) / 255.0,
            )
            return [p.prepare(image) for p in preparers]
        if modality == "audio":
            clip = decode_audio(data, self.limits)
            rms = float(np.sqrt(np.mean(np.square(clip.samples)))) if clip.samples.size else 0.0
            stats.update(
                audio_seconds=clip.duration,
                audio_sample_rate=float(clip.sample_rate),
                audio_rms_db=20 * np.log10(max(rms, 1e-10)),
            )
            return [p.prepare(clip) for p in preparers]
        video_preparers: list[VideoPreparer] = preparers
        outputs, info = decode_video(data, video_preparers, self.limits)
        stats.update(video_seconds=info.num_frames / info.fps, video_fps=info.fps)
        return outputs

    def collate(self, items: Sequence[PreparedAd], *, dense: bool | None = None) -> AdBatch:
        """Stack prepared ads into the graph's inputs.

        Args:
            items: Prepared ads.
            dense: Give every ad a row in every modality (placeholders where absent), so
                shapes depend on the batch size alone (fixed-shape compilers, training);
                packed (the default unless the preparer was made dense), a modality's inputs
                hold only the ads that have it.

        Returns:
            The batch.
        """
        dense = self.dense if dense is None else dense
        presence = torch.tensor([item.presence for item in items], dtype=torch.bool)
        presence = presence.reshape(len(items), len(MODALITIES))
        inputs = []
        for name, default in self.placeholders.items():
            column = presence[:, MODALITIES.index(self.modality_of[name])]
            stacked = [
                item.tensors.get(name, default)
                for item, present in zip(items, column.tolist(), strict=True)
                if dense or present
            ]
            inputs.append(torch.stack(stacked) if stacked else default.unsqueeze(0)[:0])
        for modality in self.modalities:
            column = presence[:, MODALITIES.index(modality)]
            rows = torch.arange(1, len(items) + 1) if dense else rows_index(column)
            inputs.append(rows * column.long())
        return AdBatch(
            [i.id for i in items], tuple(inputs), presence.float(), [i.stats for i in items]
        )
