"""``save_pretrained`` / ``from_pretrained``: a JSON config plus safetensors weights.

Loading never unpickles: the architecture comes from the config through the registry, the
tensors from safetensors. A "heads" checkpoint (the embedded default) holds only the heads (and
the encoders' ``head_trained`` parts, such as the text lexicon) and takes the encoders' other
weights from where their settings point (e.g. the MiniLM package); a
"full" checkpoint is self-contained, Hugging Face configs and tokenizers included.

A heads checkpoint may carry updates (:func:`save_update`): another checkpoint's weights
file, byte for byte, plus ``update.safetensors`` with what training changed since, each
fine-tuned matrix's change as a rank-r product. Git then stores only the update: a model
continued from the embedded default costs kilobytes of repository, not another weights file.
A model continued from a checkpoint that has updates keeps them, byte for byte, and adds its
own (``update-2.safetensors``, ...): each applies to the model its predecessors made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from encoders.base import Encoder, resolve_model_dir, size_mismatch
from ensemble.builder import build_ensemble, check_matches_config
from ensemble.config import EncoderConfig, ModelConfig
from ensemble.model import AdPolicyEnsemble

CONFIG_FILE = "config.json"
INT8_DELTA = "int8-delta"
# Stored delta types -> steps each side of zero. Both are int8 on disk; git's compression keeps
# int7-delta's 7-bit steps in 87 % of int8-delta's bytes (4.30 MB against 4.96 for the default).
DELTA_STEPS = {INT8_DELTA: 127, "int7-delta": 63}
_SCALE_SUFFIX = ".delta_scale"
WEIGHTS_FILE = "model.safetensors"
UPDATE_FILE = "update.safetensors"
_UPDATE_A, _UPDATE_B = ".update_a", ".update_b"
# The newest format read. 2: a chain of updates (``"updates"``), written by save_update;
# format 1 (save_pretrained, and the first updates) held at most one (``"update"``).
FORMAT_VERSION = 2
_PLAIN_FORMAT = 1  # a checkpoint without updates: readable by format-1 code as well
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt"}


def save_pretrained(
    model: AdPolicyEnsemble,
    directory: str | Path,
    *,
    weights: Literal["full", "heads"] = "full",
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and encoder files) to ``directory``.

    Args:
        model: An ensemble built by :func:`ensemble.builder.build_ensemble`.
        directory: Output directory (created).
        weights: ``"full"`` (self-contained) or ``"heads"`` (heads and the encoders'
            ``head_trained`` parts only; the encoders load the rest from their settings, so
            those must stay reachable).
        extra: JSON-serialisable metadata stored under ``"checkpoint"`` (e.g. training report).
        dtype: Store the parameters in this type (e.g. ``torch.float16``: half the file;
            buffers, such as analyzers' constants, stay as they are); :func:`from_pretrained`
            loads them back into the model's own type. None: as they are.
            ``"int8-delta"`` (a "heads" checkpoint only): the encoders' fine-tuned matrices
            as int8 steps, one scale per row, away from the weights their settings load
            (a quarter of fp32; fine-tuning moves a weight far less than its own size, so
            the steps are fine), every other parameter in float16. ``"int7-delta"``: the
            same with 63 steps each side of zero instead of 127 (smaller once compressed).

    Returns:
        The directory.
    """
    if isinstance(dtype, str) and dtype not in DELTA_STEPS:
        raise ValueError(f"dtype {dtype!r}: a torch dtype or one of {sorted(DELTA_STEPS)}")
    if weights not in ("full", "heads"):
        raise ValueError(f"weights {weights!r}: 'full' or 'heads'")
    check_matches_config(model)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    cast = {name for name, _ in model.named_parameters()} if dtype is not None else set()
    to = torch.float16 if isinstance(dtype, str) else dtype
    state = {
        k: (v.to(to) if k in cast else v).detach().contiguous()
        for k, v in model.state_dict().items()
    }
    if isinstance(dtype, str):
        if weights != "heads":
            raise ValueError(f"{dtype} storage needs a heads checkpoint (deltas from the base)")
        state.update(_int8_deltas(model, DELTA_STEPS[dtype]))
    if weights == "heads":
        stored = stored_with_heads(model)
        state = {k: v for k, v in state.items() if stored(k)}
        config = _relative_to(config, out)
    else:
        config = bundle_encoder_files(config, out)
    save_file(state, str(out / WEIGHTS_FILE), metadata=_column_order(model))
    payload = config.to_json()
    stored_dtype = dtype if isinstance(dtype, str) else str(dtype or torch.float32)
    stored_dtype = stored_dtype.removeprefix("torch.")
    payload["checkpoint"] = {
        "format": _PLAIN_FORMAT, "weights": weights, "dtype": stored_dtype, **(extra or {})
    }  # fmt: skip
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return out


def _int8_deltas(model: AdPolicyEnsemble, steps: int) -> dict[str, torch.Tensor]:
    """The encoders' fine-tuned matrices as int8 steps (at most ``steps`` each side of zero)
    away from their base weights (those a fresh build loads), with one float32 scale per row
    under ``KEY.delta_scale``."""
    base = build_ensemble(model.config).state_dict()
    out = {}
    for name, param in model.named_parameters():
        if param.dim() < 2 or not _is_tuned(model, name):
            continue
        delta = (param.detach().float() - base[name].float()).reshape(len(param), -1)
        scale = delta.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / steps
        stepped = torch.round(delta / scale[:, None]).to(torch.int8)
        out[name] = stepped.reshape(param.shape).contiguous()
        out[name + _SCALE_SUFFIX] = scale.contiguous()
    return out


def _is_tuned(model: AdPolicyEnsemble, name: str) -> bool:
    for key, module in model.encoders.items():
        encoder: Encoder = module  # type: ignore[assignment]
        if name.startswith(tuple(f"encoders.{key}.{part}." for part in encoder.tuned)):
            return True
    return False


def _add_deltas(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> None:
    """Replace each int8 delta in ``state`` by its base weight plus the delta (in place)."""
    for scale_key in [k for k in state if k.endswith(_SCALE_SUFFIX)]:
        name = scale_key.removesuffix(_SCALE_SUFFIX)
        scale = state.pop(scale_key)
        steps = state[name].float().reshape(len(scale), -1) * scale[:, None]
        state[name] = (base[name].float() + steps.reshape(base[name].shape)).to(base[name].dtype)


def stored_with_heads(model: AdPolicyEnsemble) -> Callable[[str], bool]:
    """Whether a state-dict key of ``model`` belongs in a "heads" checkpoint: everything but
    the encoders, except the encoders' ``head_trained`` and ``tuned`` parts (the rest of each
    encoder loads from its settings)."""
    kept = []
    for key, module in model.encoders.items():
        encoder: Encoder = module  # type: ignore[assignment]
        kept += [f"encoders.{key}.{name}." for name in encoder.head_trained + encoder.tuned]
    prefixes = tuple(kept)
    return lambda name: not name.startswith("encoders.") or name.startswith(prefixes)


def bundle_encoder_files(config: ModelConfig, out: str | Path) -> ModelConfig:
    """Copy each encoder's Hugging Face config and tokenizer files under ``out/encoders/KEY``.

    Weight files are not copied (the caller stores the weights, or a graph holds them). The
    returned config points at the copies with paths relative to ``out`` (resolved again by
    :func:`resolve_encoder_paths`), loads no pretrained weights and no local weight files.

    Args:
        config: The config whose encoders' files to copy.
        out: The directory the copies go under (a checkpoint or an export artifact).

    Returns:
        The config with relative ``model_dir`` settings, ``pretrained`` off, ``weights`` None.
    """
    root = Path(out)
    for key, enc in config.encoders.items():
        settings = dict(enc.settings)
        if "model_dir" in settings:
            source = resolve_model_dir(settings["model_dir"])
            target = root / "encoders" / key
            target.mkdir(parents=True, exist_ok=True)
            for item in source.iterdir():
                if item.is_file() and item.suffix not in _WEIGHT_SUFFIXES:
                    shutil.copy2(item, target / item.name)
            settings.update(model_dir=f"encoders/{key}", pretrained=False)
        if settings.get("weights") is not None:
            settings["weights"] = None
        config = config.with_encoder(key, EncoderConfig(enc.type, settings))
    return config


def _with_paths(config: ModelConfig, change: Callable[[str], str]) -> ModelConfig:
    """``config`` with each encoder's ``model_dir`` / ``weights`` path passed through
    ``change`` (``package:NAME`` values kept as they are)."""
    for key, enc in config.encoders.items():
        settings = dict(enc.settings)
        for name in ("model_dir", "weights"):
            value = settings.get(name)
            if isinstance(value, str) and not value.startswith("package:"):
                settings[name] = change(value)
        config = config.with_encoder(key, dataclasses.replace(enc, settings=settings))
    return config


def _relative_to(config: ModelConfig, out: Path) -> ModelConfig:
    """``config`` with each relative encoder path (read, as the model was built, from the
    working directory) rewritten relative to the checkpoint ``out``, where
    :func:`resolve_encoder_paths` will look for it; absolute paths kept."""
    return _with_paths(
        config,
        lambda v: v if Path(v).is_absolute() else os.path.relpath(Path(v).resolve(), out.resolve()),
    )


def resolve_encoder_paths(config: ModelConfig, root: str | Path) -> ModelConfig:
    """Make the encoders' relative ``model_dir`` / ``weights`` settings absolute under ``root``.

    ``package:NAME`` values and absolute paths are kept as they are.
    """
    return _with_paths(config, lambda v: str((Path(root) / v).resolve()))


def read_checkpoint_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The model config of a checkpoint (relative paths made absolute) and its metadata."""
    root = Path(directory)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a checkpoint directory")
    data = json.loads(path.read_text())
    meta = data.pop("checkpoint", {})
    if meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta['format']} is newer than this code")
    return resolve_encoder_paths(ModelConfig.from_json(data), root), meta


def save_update(
    model: AdPolicyEnsemble,
    directory: str | Path,
    base: str | Path,
    *,
    rank: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Store ``model`` as ``base``'s weights file and updates, unchanged, plus a low-rank update.

    Each fine-tuned matrix's difference from ``base`` (as :func:`from_pretrained` loads it,
    its own updates applied) is stored as two float16 factors of its best rank-``rank``
    approximation (truncated SVD); every other parameter of a heads checkpoint (the heads)
    that differs from ``base``'s, in float16 whole. :func:`from_pretrained` applies the
    updates in order, each checked against the sha256 of the file before it.

    Args:
        model: An ensemble with ``base``'s architecture (e.g. trained from it with ``--init``).
        directory: Output directory (created; may be ``base`` itself).
        base: A "heads" checkpoint with fine-tuned matrices (e.g. the embedded default).
        rank: Rank of each matrix's change.
        extra: JSON-serialisable metadata stored under ``"checkpoint"``.

    Returns:
        The directory.
    """
    if rank < 1:
        raise ValueError(f"rank {rank}: must be at least 1")
    root, out = Path(base), Path(directory)
    _, meta = read_checkpoint_config(root)
    if meta.get("weights") != "heads":
        raise ValueError(f"{root}: an update needs a heads checkpoint as its base")
    start = _load(root, update=True).state_dict()
    stored = stored_with_heads(model)
    parameters = {name for name, _ in model.named_parameters()}  # buffers keep their type
    update = {}
    for name, value in model.state_dict().items():
        if not stored(name):
            continue
        if value.dim() >= 2 and _is_tuned(model, name):
            delta = value.detach().float() - start[name].float()
            u, s, vh = torch.linalg.svd(delta.reshape(len(delta), -1), full_matrices=False)
            root_s = s[:rank].sqrt()
            update[name + _UPDATE_A] = (u[:, :rank] * root_s).half().contiguous()
            update[name + _UPDATE_B] = (root_s[:, None] * vh[:rank]).half().contiguous()
        else:
            kept = (value.half() if name in parameters else value).detach().contiguous()
            if name not in start or not torch.equal(kept, start[name].to(kept.dtype)):
                update[name] = kept
    chain = _updates(meta)
    files = _chain_files(chain)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != root.resolve():
        for file in files:
            shutil.copyfile(root / file, out / file)
    file = UPDATE_FILE if not chain else f"update-{len(chain) + 1}.safetensors"
    save_file(update, str(out / file), metadata=_column_order(model))
    payload = model.config.to_json()
    entry = {"file": file, "rank": rank, "base": _sha256(out / files[-1])}
    payload["checkpoint"] = {
        "format": FORMAT_VERSION, "weights": "heads", "dtype": meta.get("dtype", "float32"),
        "updates": [*chain, entry], **(extra or {}),
    }  # fmt: skip
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return out


POLICIES_KEY = "policies"  # safetensors metadata: the policies, in the heads' column order


def _column_order(model: AdPolicyEnsemble) -> dict[str, str]:
    """The weights file's metadata: the policies its heads' columns score, in order."""
    return {POLICIES_KEY: json.dumps(model.config.policy_names)}


def _check_column_order(directory: Path, file: str, config: ModelConfig) -> None:
    """Refuse a config listing its policies in another order than the weights were saved
    with (each head's output columns follow that order: reordered, the policies would
    silently take each other's scores). Files saved before the order was recorded pass."""
    with safe_open(str(directory / file), framework="pt") as f:
        stored = (f.metadata() or {}).get(POLICIES_KEY)
    if stored is not None and json.loads(stored) != config.policy_names:
        raise ValueError(
            f"{directory}: the weights score the policies {json.loads(stored)} in that order, "
            f"but config.json lists {config.policy_names}: the heads' columns follow the "
            "names and order they were trained with; restore them, or retrain"
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _updates(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """A checkpoint's updates in order."""
    return list(meta.get("updates", [meta["update"]] if "update" in meta else []))


def _chain_files(chain: list[dict[str, Any]]) -> list[str]:
    """The weights file and the updates' files, in order: each update's base is the one
    before it."""
    return [WEIGHTS_FILE, *(entry["file"] for entry in chain)]


def _apply_update(
    state: dict[str, torch.Tensor], root: Path, update: dict[str, Any], base: str
) -> None:
    """Add a :func:`save_update` update made on top of the file ``base`` to ``state`` (in place)."""
    if _sha256(root / base) != update["base"]:
        raise ValueError(
            f"{root / update['file']} was made for another {base} (the sha256 of "
            f"{root / base} differs): an update applies to its own base only"
        )
    stored = load_file(str(root / update["file"]))
    for key, value in stored.items():
        if key.endswith(_UPDATE_A):
            name = key.removesuffix(_UPDATE_A)
            change = (value.float() @ stored[name + _UPDATE_B].float()).reshape(state[name].shape)
            state[name] = (state[name].float() + change).to(state[name].dtype)
        elif not key.endswith(_UPDATE_B):
            state[key] = value


def from_pretrained(directory: str | Path) -> AdPolicyEnsemble:
    """Rebuild an ensemble written by :func:`save_pretrained` or :func:`save_update`."""
    return _load(Path(directory), update=True)


def _load(directory: Path, *, update: bool) -> AdPolicyEnsemble:
    config, meta = read_checkpoint_config(directory)
    model = build_ensemble(config)
    _check_column_order(directory, WEIGHTS_FILE, config)
    state = load_file(str(directory / WEIGHTS_FILE))
    _add_deltas(state, model.state_dict())
    if update:
        chain = _updates(meta)
        for entry, base in zip(chain, _chain_files(chain), strict=False):
            _apply_update(state, directory, entry, base)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape than the config builds
        mismatch = size_mismatch(err) or err
        raise ValueError(f"{directory}: weights do not match the config ({mismatch})") from None
    missing = list(result.missing_keys)
    if meta.get("weights") == "heads":
        stored = stored_with_heads(model)
        missing = [k for k in missing if stored(k)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{directory}: weights do not match the config "
            f"(missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]})"
        )
    return model.eval()
