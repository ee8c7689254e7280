"""Image encoder: a torchvision backbone by name, classifier replaced by identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from encoders.base import Encoder, InputSpec
from encoders.registry import register_encoder
from encoders.vision import IMAGENET_MEAN, IMAGENET_STD, fit_size, headless_backbone, letterbox


@dataclass(frozen=True)
class ImageSettings:
    """Settings of the image encoder.

    Attributes:
        backbone: torchvision classification model name (resnet18, mobilenet_v3_small, ...).
        weights: Local weights of the full torchvision model, or None (random init).
        image_size: Side of the square input; images are letterboxed into it.
    """

    backbone: str = "resnet18"
    weights: str | None = None
    image_size: int = 224


BACKBONES = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")


@register_encoder(*BACKBONES, settings=ImageSettings, defaults=lambda name: {"backbone": name})
class TorchvisionImageEncoder(Encoder):
    """Inputs: ``pixels`` [batch, 3, size, size] (ImageNet-normalised). Output: [batch, dim]."""

    modality = "image"

    @classmethod
    def preparer(cls, settings: Any) -> ImagePreparer:
        return ImagePreparer(settings)

    def __init__(self, settings: ImageSettings) -> None:
        super().__init__()
        self.backbone, self.output_dim = headless_backbone(settings.backbone, settings.weights)
        size = settings.image_size
        self.input_spec = (InputSpec("pixels", (3, size, size), torch.float32),)

    def forward(self, pixels: Tensor) -> Tensor:
        """Args: pixels [batch, 3, H, W]. Returns [batch, output_dim]."""
        out: Tensor = self.backbone(pixels)
        return out


class ImagePreparer:
    """Letterboxes a decoded RGB image into ``image_size`` and normalises it."""

    def __init__(self, settings: ImageSettings) -> None:
        self.size = settings.image_size

    def prepare(self, media: Image.Image) -> dict[str, Tensor]:
        resized = media.resize(
            fit_size(media.width, media.height, self.size), Image.Resampling.BILINEAR
        )
        return {"pixels": letterbox(np.asarray(resized), self.size, IMAGENET_MEAN, IMAGENET_STD)}

    def placeholder(self) -> dict[str, Tensor]:
        return {"pixels": torch.zeros(3, self.size, self.size)}
