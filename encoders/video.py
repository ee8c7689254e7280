"""Video encoders: a torchvision video model (r3d_18, ...) or an image backbone over frames.

Preparation decodes with PyAV (streamed, see :func:`encoders.media.decode_video`) and keeps
``num_frames`` frames sampled uniformly over the clip, letterboxed to ``frame_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import av
import numpy as np
import torch
from torch import Tensor, nn

from encoders.base import Encoder, InputSpec
from encoders.media import VideoInfo
from encoders.registry import register_encoder
from encoders.vision import IMAGENET_MEAN, IMAGENET_STD, fit_size, headless_backbone, letterbox

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class VideoSettings:
    """Settings of a video encoder.

    Attributes:
        backbone: torchvision video model (``r3d_18``, ``r2plus1d_18``, ``mc3_18``, ``s3d``)
            for :class:`VideoModelEncoder`, or an image model for :class:`FramePoolEncoder`.
        weights: Local weights of the full torchvision model, or None.
        num_frames: Frames sampled uniformly over the clip.
        frame_size: Side of the square frames (letterboxed).
    """

    backbone: str = "r3d_18"
    weights: str | None = None
    num_frames: int = 16
    frame_size: int = 112


class GlobalAvgPool3d(nn.Module):
    """``AdaptiveAvgPool3d(1)`` as a ``mean``: the same numbers, with an operator on AWS
    Neuron's supported list (``adaptive_avg_pool3d`` is not)."""

    def forward(self, x: Tensor) -> Tensor:
        """Args: x [batch, C, T, H, W]. Returns [batch, C, 1, 1, 1]."""
        return x.mean(dim=(2, 3, 4), keepdim=True)


def use_mean_pooling(module: nn.Module) -> None:
    """Replace every global ``AdaptiveAvgPool3d`` under ``module`` by :class:`GlobalAvgPool3d`."""
    found = [
        (parent, name)
        for parent in module.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.AdaptiveAvgPool3d) and child.output_size in (1, (1, 1, 1))
    ]
    for parent, name in found:
        setattr(parent, name, GlobalAvgPool3d())


class VideoEncoder(Encoder):
    """A learned video encoder: sampled frames normalised by its backbone's ``mean_std``."""

    modality = "video"
    mean_std: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]]

    @classmethod
    def preparer(cls, settings: Any) -> VideoPreparer:
        return VideoPreparer(settings, cls.mean_std)


@register_encoder(
    "r3d_18",
    "r2plus1d_18",
    "mc3_18",
    settings=VideoSettings,
    defaults=lambda name: {"backbone": name},
)
class VideoModelEncoder(VideoEncoder):
    """A 3-D CNN. Inputs: ``frames`` [batch, T, 3, S, S] (Kinetics-normalised). Output [batch, D].

    Its global average pooling runs as a ``mean`` (:class:`GlobalAvgPool3d`).
    """

    mean_std = (KINETICS_MEAN, KINETICS_STD)

    def __init__(self, settings: VideoSettings) -> None:
        super().__init__()
        self.backbone, self.output_dim = headless_backbone(settings.backbone, settings.weights)
        use_mean_pooling(self.backbone)
        s = settings.frame_size
        self.input_spec = (InputSpec("frames", (settings.num_frames, 3, s, s), torch.float32),)

    def forward(self, frames: Tensor) -> Tensor:
        """Args: frames [batch, T, 3, H, W]. Returns [batch, output_dim]."""
        out: Tensor = self.backbone(frames.transpose(1, 2))
        return out


@register_encoder(
    "frame_pool",
    settings=VideoSettings,
    defaults={"backbone": "resnet18", "num_frames": 8, "frame_size": 224},
)
class FramePoolEncoder(VideoEncoder):
    """An image backbone applied to each frame, features averaged over time.

    Inputs: ``frames`` [batch, T, 3, S, S] (ImageNet-normalised). Output: [batch, D].
    """

    mean_std = (IMAGENET_MEAN, IMAGENET_STD)

    def __init__(self, settings: VideoSettings) -> None:
        super().__init__()
        self.backbone, self.output_dim = headless_backbone(settings.backbone, settings.weights)
        s = settings.frame_size
        self.input_spec = (InputSpec("frames", (settings.num_frames, 3, s, s), torch.float32),)

    def forward(self, frames: Tensor) -> Tensor:
        """Args: frames [batch, T, 3, H, W]. Returns [batch, output_dim]."""
        b, t = frames.shape[:2]
        features = self.backbone(frames.flatten(0, 1))
        return features.reshape(b, t, features.shape[-1]).mean(dim=1)


class _SampledFrames:
    """Keeps the frames at uniformly spaced indices, letterboxed and normalised."""

    def __init__(self, info: VideoInfo, settings: VideoSettings, mean_std: tuple) -> None:
        self.size = settings.frame_size
        self.mean, self.std = mean_std
        self.width, self.height = fit_size(info.width, info.height, self.size)
        picks = np.linspace(0, info.num_frames - 1, settings.num_frames).round().astype(int)
        self.picks = picks.tolist()
        self.frames: list[Tensor] = []
        self.index = 0
        self.last: av.VideoFrame | None = None

    def _convert(self, frame: av.VideoFrame) -> Tensor:
        rgb = frame.to_ndarray(format="rgb24", width=self.width, height=self.height)
        return letterbox(rgb, self.size, self.mean, self.std)

    def add(self, frame: av.VideoFrame) -> None:
        wanted = self.picks.count(self.index)
        self.index += 1
        self.last = frame
        if wanted:
            self.frames.extend([self._convert(frame)] * wanted)

    def finish(self) -> dict[str, Tensor]:
        """The sampled frames; a container that over-stated its length repeats its last frame."""
        assert self.last is not None, "finish() before any frame"
        missing = len(self.picks) - len(self.frames)
        if missing > 0:
            self.frames.extend([self._convert(self.last)] * missing)
        return {"frames": torch.stack(self.frames[: len(self.picks)])}


class VideoPreparer:
    """Uniformly sampled, letterboxed frames for a video encoder."""

    def __init__(self, settings: VideoSettings, mean_std: tuple) -> None:
        self.settings = settings
        self.mean_std = mean_std

    def start(self, info: VideoInfo) -> _SampledFrames:
        return _SampledFrames(info, self.settings, self.mean_std)

    def placeholder(self) -> dict[str, Tensor]:
        s = self.settings.frame_size
        return {"frames": torch.zeros(self.settings.num_frames, 3, s, s)}
