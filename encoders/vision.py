"""Shared pieces of the image and video encoders: torchvision backbones and letterboxing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file
from torch import Tensor, nn

from encoders.base import size_mismatch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_weights(module: nn.Module, weights: str | None) -> None:
    """Load a local state dict (``.safetensors`` or a tensors-only ``.pt``/``.pth``) into module.

    Never unpickles arbitrary objects: ``torch.load`` runs with ``weights_only=True``.
    """
    if weights is None:
        return
    path = Path(weights)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    name = type(module).__name__
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape (another backbone's)
        problem = size_mismatch(err)
        raise ValueError(f"weights {str(path)!r}: not a {name} state dict ({problem})") from None
    missing, unknown = result.missing_keys, result.unexpected_keys
    if missing or unknown:
        raise ValueError(
            f"weights {str(path)!r}: not a {name} state dict: {len(missing)} of its keys "
            f"missing {missing[:3]}, {len(unknown)} unknown {unknown[:3]}"
        )


def headless_backbone(name: str, weights: str | None) -> tuple[nn.Module, int]:
    """A torchvision classification or video model with its last linear layer made identity.

    Only the final projection to classes goes: the norm / pooling / hidden layers of the
    classifier stay (ConvNeXt's LayerNorm and flatten, MobileNetV3's 1024-wide hidden layer).
    In-place activations and dropouts are made out-of-place: the same numbers, and operators
    (``silu``, ``hardswish``, ``dropout``) that AWS Neuron lists, unlike their ``_`` variants.

    Args:
        name: A torchvision model name (``torchvision.models.list_models()``).
        weights: Local weights of the FULL torchvision model (classifier included), or None.

    Returns:
        The backbone and its feature width.
    """
    model = torchvision.models.get_model(name, weights=None)
    load_weights(model, weights)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][0].split(".")[0] not in ("fc", "classifier", "heads", "head"):
        raise ValueError(f"torchvision model {name!r} has no known classifier layer")
    path, last = linears[-1]
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return model, int(last.in_features)


def fit_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Width and height scaled to fit in ``size x size`` keeping the aspect ratio."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox(
    rgb: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Tensor:
    """Normalise an already fitted ``[h, w, 3]`` uint8 image and pad it to ``[3, size, size]``.

    The padding is the mean colour (zero after normalisation), centred, so the whole picture
    is seen: cropping could cut off the very part of an ad that breaks a policy.
    """
    h, w = rgb.shape[:2]
    chw = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1).div_(255.0)
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    out = torch.zeros(3, size, size)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top : top + h, left : left + w] = (chw - mean_t) / std_t
    return out
