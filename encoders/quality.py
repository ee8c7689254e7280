"""Image-quality analyzer: blur (variance of the Laplacian) and the source resolution.

Preparation converts the image to grey (Pillow's ITU-R 601-2 luma, 8 bits), scales it down to
fit ``analysis_size`` (never up: upscaling would add blur of its own) with an area filter, and
places it in a square canvas one pixel in from the top-left corner, the canvas filled all
round by mirroring the image (OpenCV's ``BORDER_REFLECT_101``). The graph applies OpenCV's
``Laplacian`` aperture for ``ksize=1`` (``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``), summed from
shifted views of the canvas, and takes the variance over the image's own pixels, so it equals
``cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var()`` on the same grey input; the image's size is
an input, so every image shares one shape.

A creative of a standard display size (the IAB's fixed ad sizes, :data:`STANDARD_SIZES`: 300x250,
728x90, 320x50, ...) at 1x, 2x or 3x is as large as its placement by definition: the analyzer
reports it (``standard_size``), and the size rule leaves it to the blur rule.

Known blind spot: a pixelated image (a small one enlarged by nearest-neighbour) has hard block
edges, so its Laplacian variance is high, and its source size is the enlarged one: neither
measure flags it. Enlargements by interpolation (bilinear, bicubic) are smooth and read as blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from encoders.base import Encoder, InputSpec, in_row_groups
from encoders.registry import register_encoder
from encoders.rules import QualityRule
from encoders.vision import fit_size

# The IAB's fixed ad sizes (New Ad Portfolio, 2017, and the legacy sizes still sold), width x
# height in CSS pixels: a creative of one of them, at a device-pixel ratio of 1 to 3, fills its
# placement and is never "too small", whatever its short side.
STANDARD_SIZES = frozenset({
    (970, 250), (970, 90), (728, 90), (300, 250), (336, 280), (300, 600), (300, 1050),
    (160, 600), (120, 600), (468, 60), (234, 60), (120, 60), (88, 31), (250, 250), (200, 200),
    (180, 150), (125, 125), (120, 240), (240, 400), (320, 50), (300, 50), (320, 100),
    (320, 480), (480, 320), (1024, 768), (768, 1024),
})  # fmt: skip
STANDARD_SCALES = (1, 2, 3)


def standard_size(width: int, height: int) -> bool:
    """Whether ``width`` x ``height`` is one of :data:`STANDARD_SIZES` at 1x, 2x or 3x."""
    return any(
        (width // k, height // k) in STANDARD_SIZES and width % k == height % k == 0
        for k in STANDARD_SCALES
    )


@dataclass(frozen=True)
class QualitySettings:
    """Settings of the image-quality analyzer.

    Attributes:
        analysis_size: Images whose longer side exceeds this are scaled down to it; blur is
            judged at that scale (as an ad is seen), so thresholds depend on it.
        working_set: Elements of one group's intermediates when run eagerly (0: the whole
            batch at once): a batch's images are measured in groups of as many as fit, at
            least one, so a large batch costs per image what one image does.
        standard_sizes: Whether a creative of a standard display size (:func:`standard_size`)
            is exempt from the size rule (False: every image is held to ``min_short_side``).
    """

    analysis_size: int = 512
    working_set: int = 2**19
    standard_sizes: bool = True


@register_encoder("image_quality", settings=QualitySettings)
class ImageQualityAnalyzer(Encoder):
    """Variance of the Laplacian of the grey image, the source's shorter side, and whether it
    is a standard display size.

    Inputs: ``grey`` [batch, S + 2, S + 2] float (0-255: the image from row and column 1,
    mirrored all round it), ``size`` [batch, 2] int64 (rows, columns of the image),
    ``short_side`` [batch] float (shorter side of the source image, pixels), ``standard``
    [batch] float (1: a standard display size, :func:`standard_size`).

    Output [batch, 3]: ``laplacian_var``, ``short_side`` and ``standard_size``.
    """

    modality = "image"
    kind = "analyzer"
    rule = QualityRule
    measurement_names = ("laplacian_var", "short_side", "standard_size")

    @classmethod
    def preparer(cls, settings: Any) -> QualityPreparer:
        return QualityPreparer(settings)

    def __init__(self, settings: QualitySettings) -> None:
        super().__init__()
        s = settings.analysis_size + 2  # a one-pixel mirrored border all round
        self.output_dim = len(self.measurement_names)
        self.input_spec = (
            InputSpec("grey", (s, s), torch.float32),
            InputSpec("size", (2,), torch.int64),
            InputSpec("short_side", (), torch.float32),
            InputSpec("standard", (), torch.float32),
        )
        self.working_set = settings.working_set

    def forward(self, grey: Tensor, size: Tensor, short_side: Tensor, standard: Tensor) -> Tensor:
        """Args: grey [B, S + 2, S + 2], size [B, 2], short_side [B], standard [B].
        Returns [B, 3]."""
        per_row = grey.shape[1] * grey.shape[2]
        (variance,) = in_row_groups(self._variance, (grey, size), self.working_set, per_row)
        return torch.stack([variance, short_side.float(), standard.float()], dim=1)

    def _variance(self, grey: Tensor, size: Tensor) -> tuple[Tensor]:
        """The Laplacian's variance over each image's own pixels: [B]. The aperture is summed
        from shifted views (on 0-255 integers, exact in float32, so equal to the convolution
        bit for bit): a one-channel 3x3 convolution runs 6x slower on CPU."""
        x = grey.float()
        centre = x[:, 1:-1, 1:-1]
        laplacian = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4 * centre
        steps = torch.arange(laplacian.shape[-1], device=grey.device)
        rows = (steps.unsqueeze(0) < size[:, :1]).float()  # [B, S]
        cols = (steps.unsqueeze(0) < size[:, 1:]).float()
        mask = rows.unsqueeze(2) * cols.unsqueeze(1)
        count = _image_sum(mask).clamp(min=1.0)
        mean = _image_sum(laplacian * mask) / count
        centred = laplacian - mean.view(-1, 1, 1)
        return (_image_sum(centred * centred * mask) / count,)


def _image_sum(x: Tensor) -> Tensor:
    """[B, S, S] -> [B], summed along rows, then columns: the same order at any batch size
    (``sum((1, 2))`` vectorises across the batch), so an image measures the same bit for bit
    alone, in an eager group or in a whole traced batch."""
    return x.sum(2).sum(1)

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        s = self.input_spec[0].shape[0]
        grey = torch.randint(0, 256, (batch_size, s, s)).float()
        size = torch.randint(1, s - 1, (batch_size, 2))
        standard = torch.randint(0, 2, (batch_size,)).float()
        return grey, size, torch.randint(50, 2000, (batch_size,)).float(), standard


def analysis_grey(image: Image.Image, analysis_size: int) -> np.ndarray:
    """The grey image the analyzer measures: [rows, cols] uint8, longer side <= analysis_size."""
    grey = image.convert("L")
    if max(grey.size) > analysis_size:
        grey = grey.resize(fit_size(*grey.size, analysis_size), Image.Resampling.BOX)
    return np.asarray(grey)


class QualityPreparer:
    """The analysis-size grey image mirrored into a square canvas, with the source size."""

    def __init__(self, settings: QualitySettings) -> None:
        self.size = settings.analysis_size
        self.standard_sizes = settings.standard_sizes

    def prepare(self, media: Image.Image) -> dict[str, Tensor]:
        grey = analysis_grey(media, self.size)
        rows, cols = grey.shape
        fill = ((1, self.size + 1 - rows), (1, self.size + 1 - cols))
        canvas = np.pad(grey, fill, mode="reflect")
        return {
            "grey": torch.from_numpy(canvas.astype(np.float32)),
            "size": torch.tensor([rows, cols], dtype=torch.int64),
            "short_side": torch.tensor(float(min(media.size))),
            "standard": torch.tensor(float(self.standard_sizes and standard_size(*media.size))),
        }

    def placeholder(self) -> dict[str, Tensor]:
        return {
            "grey": torch.zeros(self.size + 2, self.size + 2),
            "size": torch.tensor([self.size, self.size], dtype=torch.int64),
            "short_side": torch.tensor(0.0),
            "standard": torch.tensor(0.0),
        }
