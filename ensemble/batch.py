"""From raw ads to batch tensors: ONE preparation path for scoring, training and serving.

An ad is a mapping with an optional ``id`` and any of ``text``, ``image``, ``audio``,
``video``. Each present field is decoded once and handed to every encoder of its modality;
an absent one gets no row in that modality's packed inputs (or, in a dense batch, the
encoders' placeholders) and a 0 in the ad's ``index.<modality>``. A bad field
raises :class:`AdError` listing every problem, each naming its field; what was accepted but
changed or measured otherwise (transparency flattened, media that decoded only in part, audio
too short for a loudness block, blank text beside other fields) or what the model cannot read
(text in other scripts than Latin) is listed in the ad's ``warnings``: decoding's, and those of
preparers that have a ``warnings(media)`` method.

:meth:`AdPreparer.stream` is THE loop over ads that every caller uses (scoring, evaluation,
training, calibration, the monitoring baseline): one rule for a bad ad (``on_error``), and no
exception from one ad ever escapes it as anything but that ad's error.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageStat
from torch import Tensor

from encoders.base import MODALITIES, InputError, bucket_of
from encoders.media import (
    WARNINGS,
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
from ensemble.rows import (
    AdError,
    ModelInfo,
    Record,
    Row,
    ad_id,
    error_row,
    id_problem,
    model_info,
)

log = logging.getLogger(__name__)
OnError = Literal["row", "raise", "skip"]
INVISIBLE = {"Cc", "Cf", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}

AD_FIELDS = ("id", *MODALITIES)
PASSTHROUGH_FIELDS = ("labels", "meta")


@dataclass
class PreparedAd:
    """One ad ready to batch.

    Attributes:
        id: The ad's id (:func:`ensemble.rows.ad_id`).
        tensors: Input name (``"<encoder key>.<input>"``) -> tensor, present modalities only.
        presence: One flag per modality, in ``MODALITIES`` order.
        stats: Cheap input statistics (sizes, durations) for monitoring.
        warnings: What the ad was scored on less or other than it sent, each naming its field.
        windows: A text longer than one window: the text inputs of its further windows
            (``tensors`` holds the first), each scored as a text-only ad; the ad takes each
            policy's maximum over them (:meth:`ensemble.scoring.Scorer.score_prepared`).
    """

    id: str
    tensors: dict[str, Tensor]
    presence: tuple[bool, ...]
    stats: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    windows: list[dict[str, Tensor]] = field(default_factory=list)

    def window_ads(self) -> list[PreparedAd]:
        """The further windows as text-only ads under this ad's id."""
        text_only = tuple(m == "text" for m in MODALITIES)
        return [PreparedAd(self.id, window, text_only) for window in self.windows]


@dataclass
class AdBatch:
    """Prepared ads stacked for the graph.

    Attributes:
        ids: Ad ids, in batch order.
        inputs: Tensors in the graph's input order (see ``AdPolicyEnsemble``).
        presence: [batch, 4] float, 1 where the ad has the modality (``MODALITIES`` order).
        stats: Each ad's input statistics.
        warnings: Each ad's warnings.
    """

    ids: list[str]
    inputs: tuple[Tensor, ...]
    presence: Tensor
    stats: list[dict[str, float]]
    warnings: list[list[str]]

    def to(self, device: torch.device | str) -> tuple[Tensor, ...]:
        return tuple(t.to(device) for t in self.inputs)


class AdPreparer:
    """Prepares ads for an ensemble of a given config (no model weights needed).

    Args:
        config: The ensemble's config; its encoders' registry entries supply the preparers.
        allow_paths: Whether media fields may be file paths (False on a server).
        any_path: Accept paths that leave ``base_dir`` (by default a path in a file of ads
            must stay in that file's folder).
        overrides: Encoder key -> settings to replace (e.g. the tokenizer directory inside a
            TorchServe archive).
        dense: Collate dense batches by default (graphs compiled for fixed shapes).
        media_uris: Read media given as object-store URIs (``s3://``, ``gs://``, ``hdfs://``,
            ``file://``; :func:`encoders.media.read_uri`); default: where paths are allowed
            (offline, never on a server).
        keys: Prepare only these encoders' inputs (default: every encoder's). Training uses
            it to skip the analyzers, whose dense placeholders (60 s of video grids) would
            dwarf a text batch.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        allow_paths: bool = True,
        any_path: bool = False,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        dense: bool = False,
        keys: Collection[str] | None = None,
        media_uris: bool | None = None,
    ) -> None:
        self.dense = dense
        self.limits: MediaLimits = config.limits
        self.allow_paths = allow_paths
        self.any_path = any_path
        self.media_uris = allow_paths if media_uris is None else media_uris
        self.model: ModelInfo = model_info(config)
        self.preparers: dict[str, list[tuple[str, Any]]] = {m: [] for m in MODALITIES}
        self.buckets: dict[str, tuple[int, ...]] = {}
        placeholders: dict[str, Tensor] = {}
        modality_of: dict[str, str] = {}
        self.min_rows: dict[str, int] = {}
        apart: dict[str, list[str]] = {}  # the inputs of encoders whose rows run apart
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
                self.min_rows[f"{key}.{name}"] = entry.cls.min_rows
                if entry.cls.rows_apart:
                    apart.setdefault(key, []).append(f"{key}.{name}")
            for name, lengths in getattr(preparer, "buckets", {}).items():
                self.buckets[f"{key}.{name}"] = lengths
        # the inputs whose padding costs the most elements first (a minute of video grids, of
        # audio, then tokens): ads sorted by bucket_key then share a batch with the ads whose
        # costliest inputs are as long as theirs
        self.buckets = dict(
            sorted(
                self.buckets.items(),
                key=lambda item: -item[1][-1] * placeholders[item[0]][0].numel(),
            )
        )
        self.apart: set[str] = set()  # the inputs an encoder's load is measured on
        for names in apart.values():
            bucketed = [n for n in names if n in self.buckets]
            self.apart.update(bucketed or names)  # the clip, not its length or weights
        self.placeholders = placeholders
        self.modality_of = modality_of
        self.modalities = [m for m in MODALITIES if self.preparers[m]]
        self.input_names = [*placeholders, *(f"index.{m}" for m in self.modalities)]

    def prepare(
        self, ad: Any, *, fallback_id: str = "#0", base_dir: Path | None = None
    ) -> PreparedAd:
        """Prepare one ad (its id by :func:`ensemble.rows.ad_id`); raises :class:`AdError`
        naming every bad field."""
        if not isinstance(ad, Mapping):
            raise AdError.of("ad", f"expected a JSON object, got {type(ad).__name__}")
        errors: list[InputError] = []
        warnings: list[str] = []
        if "id" in ad and (problem := id_problem(ad["id"])) is not None:
            errors.append(InputError("id", problem))
        accepted = ", ".join((*AD_FIELDS, *PASSTHROUGH_FIELDS))
        for name in sorted(set(ad) - set(AD_FIELDS) - set(PASSTHROUGH_FIELDS)):
            errors.append(InputError(name, f"unknown field; accepted: {accepted}"))
        tensors: dict[str, Tensor] = {}
        windows: list[dict[str, Tensor]] = []
        stats: dict[str, float] = {}
        present = [m for m in MODALITIES if ad.get(m) is not None]
        if "text" in present and isinstance(ad["text"], str) and is_blank(ad["text"]):
            if len(present) == 1:
                errors.append(InputError("text", "no visible characters (blank or invisible)"))
            else:
                warnings.append("text: no visible characters; scored on the other fields")
            present.remove("text")
        if not present and not errors:
            errors.append(InputError("ad", "no text, image, audio or video field"))
        for modality in present:
            try:
                if modality == "text":
                    windows = self._prepare_text(ad["text"], tensors, stats, warnings)
                else:
                    self._prepare_media(modality, ad[modality], base_dir, tensors, stats, warnings)
            except InputError as err:
                errors.append(err)
        if errors:
            raise AdError(errors)
        presence = tuple(m in present and bool(self.preparers[m]) for m in MODALITIES)
        return PreparedAd(ad_id(ad, fallback_id), tensors, presence, stats, warnings, windows)

    def prepare_record(self, record: Record, *, base_dir: Path | None = None) -> PreparedAd | Row:
        """A prepared ad, or its error row: an unreadable record, a bad field (4xx), or any
        other exception (500, its traceback logged here once)."""
        try:
            if record.error is not None:
                raise record.error
            return self.prepare(record.ad, fallback_id=record.fallback_id, base_dir=base_dir)
        except AdError as err:
            return error_row(record.id, err, self.model)
        except Exception as err:  # a bug must cost one ad, never the run
            log.exception("ad %s: preparation failed unexpectedly", record.id)
            problem = f"internal error while preparing the ad ({type(err).__name__}); see the log"
            return error_row(record.id, AdError.of("ad", problem, 500), self.model)

    def stream(
        self,
        records: Iterable[Record],
        *,
        base_dir: Path | None = None,
        on_error: OnError = "row",
        chunk_size: int = 64,
        workers: int = 1,
    ) -> Iterator[list[PreparedAd | Row]]:
        """THE loop over ads: prepare them in chunks, in order.

        Args:
            records: The ads (:func:`ensemble.reader.read_ads`, :func:`ensemble.reader.records_of`).
            base_dir: Directory relative media paths are resolved against.
            on_error: What a bad ad does: ``"row"`` its error row takes its place, ``"skip"``
                it is left out (logged), ``"raise"`` a ``ValueError`` naming it ends the loop.
            chunk_size: Ads per chunk.
            workers: Threads preparing a chunk (decoding releases the GIL).

        Yields:
            Per chunk, prepared ads and (``on_error="row"``) error rows.
        """
        if on_error not in ("row", "raise", "skip"):
            raise ValueError(f"on_error must be 'row', 'raise' or 'skip', not {on_error!r}")
        items = iter(records)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while chunk := list(islice(items, chunk_size)):
                out = list(pool.map(lambda r: self.prepare_record(r, base_dir=base_dir), chunk))
                failed = [o for o in out if not isinstance(o, PreparedAd)]
                if failed and on_error == "raise":
                    row = failed[0]
                    raise ValueError(f"ad {row['id']} cannot be prepared: {row.get('errors')}")
                if failed and on_error == "skip":
                    for row in failed:
                        log.warning("ad %s left out: %s", row["id"], row.get("errors"))
                    out = [o for o in out if isinstance(o, PreparedAd)]
                yield out

    def _prepare_text(
        self, value: Any, tensors: dict[str, Tensor], stats: dict[str, float], warnings: list[str]
    ) -> list[dict[str, Tensor]]:
        """The text's first window into ``tensors`` and what its encoders cannot read of it
        into ``warnings``; returns its further windows (an encoder with fewer windows than
        another repeats its first: the maximum is unchanged)."""
        if not isinstance(value, str):
            raise InputError("text", f"expected a string, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("text", "not valid Unicode (a lone surrogate)") from None
        if len(value) > self.limits.max_text_chars:
            raise InputError(
                "text",
                f"{len(value)} characters exceeds the limit of {self.limits.max_text_chars}",
                413,
            )
        per_key = [
            (key, preparer.prepare_windows(value))
            if hasattr(preparer, "prepare_windows")
            else (key, [preparer.prepare(value)])
            for key, preparer in self.preparers["text"]
        ]
        windows = [
            {
                f"{key}.{name}": t
                for key, parts in per_key
                for name, t in (parts[i] if i < len(parts) else parts[0]).items()
            }
            for i in range(max((len(parts) for _, parts in per_key), default=1))
        ]
        add_warnings([p for _, p in self.preparers["text"]], value, warnings)
        stats["text_chars"] = float(len(value))
        masks = [t for name, t in windows[0].items() if name.endswith(".attention_mask")]
        if masks:
            stats["text_tokens"] = float(masks[0].sum())
        tensors.update(windows[0])
        return windows[1:]

    def _prepare_media(
        self,
        modality: str,
        value: Any,
        base_dir: Path | None,
        tensors: dict[str, Tensor],
        stats: dict[str, float],
        warnings: list[str],
    ) -> None:
        preparers = self.preparers[modality]
        data = self._read(modality, value, base_dir)
        outputs = self._decode(modality, data, [p for _, p in preparers], stats, warnings)
        for (key, _), out in zip(preparers, outputs, strict=True):
            tensors.update({f"{key}.{name}": t for name, t in out.items()})

    def _read(self, modality: str, value: Any, base_dir: Path | None) -> bytes:
        return read_media(
            value,
            modality,
            base_dir=base_dir,
            allow_paths=self.allow_paths,
            any_path=self.any_path,
            uris=self.media_uris,
            limits=self.limits,
        )

    def prepare_media(self, modality: str, media: Any) -> dict[str, Tensor]:
        """Every encoder's inputs for one decoded text or image (a checked ``str``, a PIL
        image), named ``"<encoder key>.<input>"``: what :meth:`prepare` does for the field
        once it is read and decoded (explanations prepare altered copies this way)."""
        return {
            f"{key}.{name}": t
            for key, preparer in self.preparers[modality]
            for name, t in preparer.prepare(media).items()
        }

    def read_image(self, value: Any, *, base_dir: Path | None = None) -> Image.Image:
        """An ad's ``image`` field read and decoded as :meth:`prepare` does.

        Raises:
            InputError: The field cannot be read or decoded.
        """
        return decode_image(self._read("image", value, base_dir), self.limits)

    def _decode(
        self,
        modality: str,
        data: bytes,
        preparers: list[Any],
        stats: dict[str, float],
        warnings: list[str],
    ) -> list[dict[str, Tensor]]:
        if modality == "image":
            image = decode_image(data, self.limits)
            warnings.extend(image.info.get(WARNINGS, ()))
            stats.update(
                image_width=float(image.width),
                image_height=float(image.height),
                image_brightness=float(ImageStat.Stat(image.convert("L")).mean[0]) / 255.0,
            )
            return _prepared(preparers, image, warnings)
        if modality == "audio":
            clip = decode_audio(data, self.limits)
            warnings.extend(clip.warnings)
            rms = float(np.sqrt(np.mean(np.square(clip.samples)))) if clip.samples.size else 0.0
            stats.update(
                audio_seconds=clip.duration,
                audio_sample_rate=float(clip.sample_rate),
                audio_rms_db=20 * np.log10(max(rms, 1e-10)),
            )
            return _prepared(preparers, clip, warnings)
        video_preparers: list[VideoPreparer] = preparers
        outputs, info = decode_video(data, video_preparers, self.limits)
        warnings.extend(info.warnings)
        add_warnings(video_preparers, info, warnings)
        stats.update(video_seconds=info.num_frames / info.fps, video_fps=info.fps)
        return outputs

    def collate(self, items: Sequence[PreparedAd], *, dense: bool | None = None) -> AdBatch:
        """Stack prepared ads into the graph's inputs.

        Args:
            items: Prepared ads.
            dense: Give every ad a row in every modality (placeholders where absent), so
                shapes depend on the batch size alone (fixed-shape compilers, training);
                packed (the default unless the preparer was made dense), a modality's inputs
                hold only the ads that have it (or, when none has, the placeholder rows its
                encoder needs: ``Encoder.min_rows``).

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
            if not stacked:
                stacked = [default] * self.min_rows[name]  # rows no ad's index points to
            if stacked:
                inputs.append(torch.stack(pad_to_bucket(stacked, self.buckets.get(name, ()))))
            elif name in self.buckets:
                # an empty pack takes a bucket's length too (a graph traced at one length wants
                # it), without allocating the padded placeholder it has no row of
                length = bucket_of(len(default), self.buckets[name])
                inputs.append(default.new_zeros((0, length, *default.shape[1:])))
            else:
                inputs.append(default.unsqueeze(0)[:0])
        for modality in self.modalities:
            column = presence[:, MODALITIES.index(modality)]
            rows = torch.arange(1, len(items) + 1) if dense else rows_index(column)
            inputs.append(rows * column.long())
        return AdBatch(
            [i.id for i in items],
            tuple(inputs),
            presence.float(),
            [i.stats for i in items],
            [i.warnings for i in items],
        )

    def bucket_key(self, item: PreparedAd) -> tuple[int, ...]:
        """The bucket of each of the ad's variable-length inputs and its other dimensions
        (an audio clip's channel bucket; 0s where it has none), the costliest to pad first:
        ads with equal keys batch together without padding one to another's length or width,
        and ads sorted by key are grouped by their longest media first."""
        return tuple(
            size
            for name, lengths in self.buckets.items()
            for size in (
                (bucket_of(item.tensors[name].shape[0], lengths), *item.tensors[name].shape[1:])
                if name in item.tensors
                else (0,) * self.placeholders[name].dim()
            )
        )

    def apart_load(self, item: PreparedAd) -> float:
        """The ad's largest input of an encoder whose rows run apart (``rows_apart``), as a
        share of that input at its longest bucket and its placeholder's width (1 where it has
        no buckets; 0 where the ad has no such input; 5.1 audio padded to 8 channels weighs 4
        stereo clips): a pass of a graph holds rows whose loads sum to at most
        :class:`~ensemble.scoring.Scorer`'s ``analyzer_rows``."""
        return max(
            (
                bucket_of(len(tensor), lengths)
                * tensor[0].numel()
                / (lengths[-1] * self.placeholders[name][0].numel())
                if (lengths := self.buckets.get(name))
                else 1.0
                for name in self.apart
                if (tensor := item.tensors.get(name)) is not None
            ),
            default=0.0,
        )


def pad_to_bucket(items: Sequence[Tensor], buckets: Sequence[int] = ()) -> list[Tensor]:
    """Zero-pad each item's first dimension to the bucket of the longest item (to the longest
    where there are no buckets), its other dimensions to the widest item's (an audio clip's
    channels, already a channel bucket); items already of that shape are kept as they are."""
    widest = [max(t.shape[d] for t in items) for d in range(items[0].dim())]
    if buckets and widest:
        widest[0] = bucket_of(widest[0], buckets)
    return [
        t
        if list(t.shape) == widest
        else torch.constant_pad_nd(
            t, [p for d in reversed(range(t.dim())) for p in (0, widest[d] - t.shape[d])]
        )
        for t in items
    ]


def _prepared(preparers: Sequence[Any], media: Any, warnings: list[str]) -> list[dict[str, Tensor]]:
    """Each preparer's tensors for a decoded image or clip, its warnings added to ``warnings``."""
    add_warnings(preparers, media, warnings)
    return [p.prepare(media) for p in preparers]


def add_warnings(preparers: Sequence[Any], media: Any, warnings: list[str]) -> None:
    """The warnings of the preparers that have a ``warnings(media)`` method (what their encoder
    reads or measures otherwise: text it cannot read, audio too short for a block), each once
    (two text encoders may say the same)."""
    for preparer in preparers:
        if hasattr(preparer, "warnings"):
            warnings.extend(n for n in preparer.warnings(media) if n not in warnings)


def is_blank(text: str) -> bool:
    """Whether a text has no visible character (only spaces, controls, zero-width marks)."""
    return all(unicodedata.category(c) in INVISIBLE for c in text)
