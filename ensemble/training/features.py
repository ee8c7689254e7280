"""Frozen-encoder embeddings of a data set, computed once and cached on disk.

Training heads over frozen encoders needs each ad's embedding once, not once per epoch or per
trial. The embeddings come from the ensemble's own encoders over the ONE preparation path
(:class:`~ensemble.batch.AdPreparer`), and are stored per encoder under a key that changes
whenever anything that could change them does: the encoder's registry type and settings, the
media limits, the encoder's weights, and the content of every ad's field for that modality
(text, or the bytes of the media file it names).

Texts are batched by token count and each batch is cut after its last non-padding column: the
same embedding (the padding is masked), several times faster than at ``max_length``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from encoders.base import MODALITIES, Encoder, InputSpec
from ensemble.batch import AdPreparer, PreparedAd, pad_to_bucket
from ensemble.model import AdPolicyEnsemble
from ensemble.reader import records_of
from ensemble.training.data import file_sha256

log = logging.getLogger(__name__)


@dataclass
class Features:
    """Embeddings of a data set, one row per ad.

    Attributes:
        embeddings: Learned encoder key -> [N, frozen_dim] float32 (zeros where absent): the
            frozen part of each embedding, without ``head_trained`` parts.
        presence: [N, 4] float32 in ``MODALITIES`` order, 1 where an embedded encoder's
            modality is present (other modalities stay 0).
    """

    embeddings: dict[str, Tensor]
    presence: Tensor


def learned_keys(model: AdPolicyEnsemble) -> list[str]:
    """Keys of the encoders with learned heads (not analyzers), in the graph's order."""
    return [k for k in model.keys if model.encoders[k].kind == "learned"]


def trim_padding(inputs: Sequence[Tensor], spec: Sequence[InputSpec]) -> list[Tensor]:
    """Cut token inputs after the last column any item attends to (other inputs unchanged).

    Args:
        inputs: An encoder's inputs in ``spec`` order, e.g. input_ids and attention_mask
            [batch, max_length].
        spec: The encoder's ``input_spec``.

    Returns:
        The inputs, token ones as [batch, length] with length <= max_length.
    """
    names = [s.name for s in spec]
    if names != ["input_ids", "attention_mask"]:
        return list(inputs)
    used = torch.nonzero(inputs[1].any(dim=0)).flatten()
    length = int(used.max()) + 1 if used.numel() else 1
    return [t[:, :length] for t in inputs]


def weights_digest(module: torch.nn.Module, skip: Sequence[str] = ()) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes).

    Args:
        module: The module.
        skip: Submodule names whose tensors are left out (an encoder's ``head_trained``).
    """
    digest = hashlib.sha256()
    prefixes = tuple(f"{name}." for name in skip)
    for name, tensor in sorted(module.state_dict().items()):
        if name.startswith(prefixes):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _field_digest(value: Any, modality: str, base_dir: Path | None) -> str:
    """A digest of one ad field: the text, or the bytes of the file a media path names."""
    if value is None or value == "":
        return "absent"
    if isinstance(value, str) and modality != "text":
        path = Path(value) if base_dir is None else base_dir / value
        with contextlib.suppress(OSError):  # not a path (e.g. too long a name)
            if path.is_file():
                return file_sha256(path)
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def cache_key(
    model: AdPolicyEnsemble, key: str, ads: Sequence[Mapping[str, Any]], base_dir: Path | None
) -> str:
    """The cache key of encoder ``key``'s embeddings of ``ads`` (hex SHA-256).

    The encoder's ``head_trained`` parts, their weights and their settings are left out: they
    do not change the frozen embedding, so trying another lexicon re-embeds nothing.
    """
    modality = model.config.modality(key)
    encoder: Encoder = model.encoders[key]  # type: ignore[assignment]
    digest = hashlib.sha256()
    settings = model.config.encoders[key].to_json()
    described = {
        "encoder": {k: v for k, v in settings.items() if k not in encoder.head_trained_settings},
        "limits": dataclasses.asdict(model.config.limits),
        "weights": weights_digest(encoder, skip=encoder.head_trained),
    }
    digest.update(json.dumps(described, sort_keys=True).encode())
    for ad in ads:
        digest.update(_field_digest(ad.get(modality), modality, base_dir).encode())
    return digest.hexdigest()


def embed(
    model: AdPolicyEnsemble,
    ads: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Features:
    """Embeddings of ``ads`` by learned encoders of ``model``, from the cache if there.

    Args:
        model: The ensemble; its learned encoders are run in eval mode, without gradients.
        ads: Ads as in a manifest (labels are ignored).
        keys: The learned encoders to embed with (default: all of them).
        cache_dir: Where embeddings are cached (None: compute, store nothing).
        base_dir: Directory media paths are relative to.
        batch_size: Ads per encoder call.
        device: Where the encoders run.
        progress: Show a progress bar while embedding.

    Returns:
        The :class:`Features` of ``ads``, in order.

    Raises:
        ValueError: The first ad that cannot be prepared, with its id and errors.
    """
    root = Path(base_dir) if base_dir is not None else None
    keys = learned_keys(model) if keys is None else list(keys)
    cache = Path(cache_dir) if cache_dir is not None else None
    files = {}
    if cache is not None:
        for key in keys:
            files[key] = cache / f"{key}-{cache_key(model, key, ads, root)[:32]}.safetensors"
    found = {k: load_file(str(f)) for k, f in files.items() if f.is_file()}
    missing = [k for k in keys if k not in found]
    if found:
        log.info("embeddings of %s loaded from %s", sorted(found), cache)
    if missing:
        computed = _compute(model, missing, ads, root, batch_size, device, progress)
        for key in missing:
            found[key] = computed[key]
            if key in files:
                files[key].parent.mkdir(parents=True, exist_ok=True)
                save_file(computed[key], str(files[key]))
    presence = torch.zeros(len(ads), len(MODALITIES))
    for key in keys:
        m = MODALITIES.index(model.encoders[key].modality)
        presence[:, m] = torch.maximum(presence[:, m], found[key]["present"].float())
    return Features({k: found[k]["embeddings"] for k in keys}, presence)


@torch.inference_mode()
def _compute(
    model: AdPolicyEnsemble,
    keys: Sequence[str],
    ads: Sequence[Mapping[str, Any]],
    base_dir: Path | None,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
) -> dict[str, dict[str, Tensor]]:
    """Run the encoders ``keys`` over ``ads``, streaming in chunks of prepared ads."""
    preparer = AdPreparer(model.config)
    encoders: dict[str, Encoder] = {k: model.encoders[k] for k in keys}  # type: ignore[misc]
    out = {
        k: {
            "embeddings": torch.zeros(len(ads), encoders[k].frozen_dim),
            "present": torch.zeros(len(ads), dtype=torch.uint8),
        }
        for k in keys
    }
    was_training = {k: e.training for k, e in encoders.items()}
    moved = {k: e.to(device).eval() for k, e in encoders.items()}
    bar = tqdm(total=len(ads), unit="ad", desc="embedding", disable=not progress)
    chunks = preparer.stream(
        records_of(ads), base_dir=base_dir, on_error="raise", chunk_size=batch_size * 16
    )
    start = 0
    with bar:
        for chunk in chunks:
            prepared = {start + k: p for k, p in enumerate(chunk) if isinstance(p, PreparedAd)}
            for key, encoder in moved.items():
                _embed_chunk(key, encoder, prepared, out[key], batch_size, device, preparer)
            start += len(chunk)
            bar.update(len(chunk))
    for key, encoder in moved.items():
        encoder.train(was_training[key])
    return out


def _embed_chunk(
    key: str,
    encoder: Encoder,
    prepared: Mapping[int, PreparedAd],
    out: dict[str, Tensor],
    batch_size: int,
    device: str | torch.device,
    preparer: AdPreparer,
) -> None:
    """Embed the prepared ads of one chunk that have ``key``'s inputs, shortest texts first
    (length-bucketed inputs padded to their batch's longest, then trimmed)."""
    names = [f"{key}.{s.name}" for s in encoder.input_spec]
    rows = [i for i, p in prepared.items() if names[0] in p.tensors]
    length = f"{key}.attention_mask"
    rows.sort(key=lambda i: int(prepared[i].tensors[length].sum()) if length in names else 0)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        parts = {n: [prepared[i].tensors[n] for i in batch] for n in names}
        inputs = [
            torch.stack(
                pad_to_bucket(parts[n], preparer.buckets[n]) if n in preparer.buckets else parts[n]
            )
            for n in names
        ]
        inputs = [t.to(device) for t in trim_padding(inputs, encoder.input_spec)]
        out["embeddings"][batch] = encoder.frozen_features(*inputs).float().cpu()
        out["present"][batch] = 1
