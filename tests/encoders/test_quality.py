"""The image-quality analyzer: OpenCV's Laplacian variance, resolution, the upscaling blind spot."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from encoders.quality import (
    ImageQualityAnalyzer,
    QualityPreparer,
    QualitySettings,
    analysis_grey,
)
from encoders.rules import QualityRule
from ensemble import samples

SETTINGS = QualitySettings()
MIN_VARIANCE = 100.0  # the default config's rule


@pytest.fixture(scope="module")
def analyzer() -> ImageQualityAnalyzer:
    return ImageQualityAnalyzer(SETTINGS).eval()


def measure(analyzer: ImageQualityAnalyzer, images: list[Image.Image]) -> torch.Tensor:
    """[len(images), 3]: laplacian_var, short_side, standard_size."""
    preparer = QualityPreparer(SETTINGS)
    items = [preparer.prepare(image) for image in images]
    with torch.no_grad():
        return analyzer(*(torch.stack([i[k] for i in items]) for k in items[0]))


def opencv(image: Image.Image) -> float:
    """``cv2.Laplacian(grey, CV_64F, ksize=1).var()`` on the grey image the analyzer measures."""
    grey = analysis_grey(image, SETTINGS.analysis_size)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var())


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


IMAGES = {
    "banner": samples.banner(1200, 628, seed=1),
    "banner_jpeg_blur2": jpeg(samples.banner(1200, 628, seed=2, blur=2.0)),
    "banner_blur6": samples.banner(1200, 628, seed=3, blur=6.0),
    "portrait": samples.banner(400, 900, seed=4),
    "small": samples.banner(300, 250, seed=5),
    "exactly_analysis_size": samples.banner(512, 300, seed=6),
    "noise": noise(640, 480, 7),
    "flat": Image.new("RGB", (800, 600), (30, 120, 200)),
    "one_pixel_wide": noise(1, 37, 8),
    "one_pixel": noise(1, 1, 9),
}


def test_laplacian_variance_is_opencv_on_the_same_grey_input(analyzer) -> None:
    """Within 1 % of ``cv2.Laplacian(ksize=1).var()`` (BORDER_REFLECT_101), every shape."""
    out = measure(analyzer, list(IMAGES.values()))
    for (name, image), (variance, side, standard) in zip(IMAGES.items(), out.tolist(), strict=True):
        expected = opencv(image)
        assert variance == pytest.approx(expected, rel=0.01, abs=1e-6), name
        assert variance == pytest.approx(expected, rel=1e-5, abs=1e-4), name  # in fact exact
        assert side == min(image.size), name
        assert standard == float(name == "small"), name  # 300 x 250, a medium rectangle


def test_analysis_scale_never_enlarges(analyzer) -> None:
    assert analysis_grey(IMAGES["small"], 512).shape == (250, 300)
    assert analysis_grey(IMAGES["banner"], 512).shape == (268, 512)
    assert analysis_grey(IMAGES["portrait"], 512).shape == (512, 228)


def verdicts(analyzer: ImageQualityAnalyzer, images: list[Image.Image]) -> list[bool]:
    """The default rule's flags (score >= 0.5)."""
    rule = QualityRule(analyzer, [0], [{"min_laplacian_var": MIN_VARIANCE, "min_short_side": 400}])
    with torch.no_grad():
        return (torch.sigmoid(rule(measure(analyzer, images)))[:, 0] >= 0.5).tolist()


def test_sharp_banners_pass_and_blurred_ones_fail(analyzer) -> None:
    sharp = [jpeg(samples.banner(1200, 628, seed=s)) for s in (10, 11)]
    blurred = [jpeg(samples.banner(1200, 628, seed=s, blur=b)) for s, b in ((12, 2.5), (13, 6.0))]
    assert verdicts(analyzer, sharp + blurred) == [False, False, True, True]


def test_short_side_below_400_fails(analyzer) -> None:
    images = [samples.banner(600, 399, seed=14), samples.banner(600, 400, seed=14)]
    assert verdicts(analyzer, images) == [True, False]


def test_standard_display_sizes_are_not_too_small_but_are_still_judged_for_blur(analyzer) -> None:
    """A 300x250 medium rectangle, a 728x90 leaderboard at 2x and a 320x50 mobile banner fill
    their placements; half a medium rectangle (150x125), 301x250 and 728x91 do not."""
    standard = [samples.banner(w, h, seed=16) for w, h in ((300, 250), (1456, 180), (320, 50))]
    other = [samples.banner(w, h, seed=16) for w, h in ((150, 125), (301, 250), (728, 91))]
    blurred = samples.banner(300, 250, seed=16, blur=6.0)
    assert measure(analyzer, standard + other)[:, 2].tolist() == [1.0] * 3 + [0.0] * 3
    assert verdicts(analyzer, [*standard, *other, blurred]) == [False] * 3 + [True] * 4
    held = QualitySettings(standard_sizes=False)
    assert float(QualityPreparer(held).prepare(standard[0])["standard"]) == 0.0


def test_upscaling_by_interpolation_reads_as_blur_but_pixelation_does_not(analyzer) -> None:
    """The known blind spot, pinned: a 10x enlargement (4x above the analysis scale) by
    bicubic interpolation is flagged as blurry; the same by nearest neighbour has hard block
    edges, a high Laplacian variance and a large source size, and passes both checks."""
    small = samples.banner(120, 63, seed=15)
    bicubic = small.resize((1200, 630), Image.Resampling.BICUBIC)
    nearest = small.resize((1200, 630), Image.Resampling.NEAREST)
    variance = measure(analyzer, [bicubic, nearest])[:, 0]
    assert variance[0] < MIN_VARIANCE < variance[1]
    assert verdicts(analyzer, [bicubic, nearest]) == [True, False]


def test_an_image_measures_the_same_alone_in_a_group_and_in_a_traced_batch(analyzer) -> None:
    """Eager, a batch runs a few images at a time (``working_set``); traced, all at once: the
    sums run in one order at any batch size, so every path measures the same bit for bit."""
    preparer = QualityPreparer(SETTINGS)
    items = [preparer.prepare(image) for image in IMAGES.values()]
    batch = tuple(torch.stack([i[k] for i in items]) for k in items[0])
    whole = ImageQualityAnalyzer(QualitySettings(working_set=0)).eval()
    with torch.no_grad():
        alone = torch.cat([analyzer(*(x[i : i + 1] for x in batch)) for i in range(len(items))])
        traced = torch.jit.trace(whole, tuple(x[:2] for x in batch), check_trace=False)
        for out in (analyzer(*batch), whole(*batch), traced(*batch)):
            assert torch.equal(out, alone)
