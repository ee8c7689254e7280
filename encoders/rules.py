"""Rule heads: deterministic scores from analyzers' named measurements.

Each analyzer class names its rule head (``Encoder.rule``; the registry refuses an analyzer
without one): it turns a policy's ``rule`` parameters into a :class:`~encoders.base.PolicyHead`
whose logits cross 0 (score 0.5) exactly at the standard's threshold, so the default flag
threshold 0.5 is the standard's verdict.

Each rule also names its :class:`ReviewMargin`: how close to the standard's line a measurement
sends an ad to people instead of deciding it (``adpolicy calibrate`` stores it as the policy's
allow / review / block band, :func:`ensemble.training.decisions.margin_band`). A margin is set in
the measurement's own unit and turned into logits by the rule's gain, so the band is
``|logit| < margin.logit``: the deciding measurement lies within the margin of its line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from encoders.base import Encoder, PolicyHead

OFF = 1e6  # stands for a check turned off: far beyond any measurement, so it never decides


@dataclass(frozen=True)
class ReviewMargin:
    """Where a rule's verdict goes to review rather than being decided automatically.

    Attributes:
        size: The margin on either side of the line, in ``unit``.
        unit: The measurement's unit (``"LU"``, ``"flashes"``, ``"ratio"``).
        measurement: What it is measured on, as reported in a row's ``measurements``.
        logit: The half-width of the review band in the rule's logits (the gain times the
            margin): review when ``-logit < rule logit < logit``.
    """

    size: float
    unit: str
    measurement: str
    logit: float


def rule_parameters(
    analyzer_type: str, rules: Sequence[Mapping[str, Any]], defaults: Mapping[str, float]
) -> dict[str, list[float]]:
    """Each policy's value of each rule parameter (its default when absent).

    Raises:
        ValueError: a rule names a parameter the analyzer's rule does not take.
    """
    for rule in rules:
        unknown = set(rule) - set(defaults)
        if unknown:
            raise ValueError(
                f"rule of analyzer {analyzer_type!r}: unknown parameters {sorted(unknown)}; "
                f"accepted: {sorted(defaults)}"
            )
    return {name: [float(rule.get(name, d)) for rule in rules] for name, d in defaults.items()}


def _column(encoder: Encoder, name: str) -> int:
    return encoder.measurement_names.index(name)


def _row(values: Sequence[float]) -> Tensor:
    return torch.tensor([list(values)], dtype=torch.float32)  # [1, policies]


class FlashRule(PolicyHead):
    """WCAG 2.3.1: more than ``max_flashes`` general or red flashes in any one second fails.

    Flash counts come in half-flash steps (transitions / 2), so "more than L" is decided at the
    midpoint ``(floor(2 L) + 0.5) / 2`` between the largest passing count and the smallest
    failing one (3.25 for L = 3). Logit = 4 x (max(max_flashes, max_red_flashes) - midpoint):
    3 flashes scores 0.27, 3.5 scores 0.73. With ``extended_seconds`` set (IRIS: 4), 2-3
    flashes per second for that long within the analyzer's window also fail, with logit
    2 x (extended_s - extended_seconds).

    Rule parameters: ``max_flashes`` (3), ``extended_seconds`` (0: off).
    """

    GAIN = 4.0
    EXTENDED_GAIN = 2.0
    # counts of 3 and 3.5 per second (half a flash of the 3.25 line) go to review; 2.5 is
    # allowed, 4 blocked. The area limit enters through the count (a flash over less than the
    # area fraction is not counted); the extended rule's margin is 1 s.
    REVIEW: ClassVar[ReviewMargin] = ReviewMargin(
        0.5, "flashes per second", "max_flashes, max_red_flashes", GAIN * 0.5
    )
    midpoint: Tensor
    extended: Tensor

    def __init__(
        self, encoder: Encoder, policy_index: Sequence[int], rules: Sequence[Mapping[str, Any]]
    ) -> None:
        super().__init__()
        self.policy_index = tuple(policy_index)
        p = rule_parameters("flash", rules, {"max_flashes": 3.0, "extended_seconds": 0.0})
        midpoints = [(math.floor(2 * limit) + 0.5) / 2 for limit in p["max_flashes"]]
        self.register_buffer("midpoint", _row(midpoints), persistent=False)
        extended = [s if s > 0 else OFF for s in p["extended_seconds"]]
        self.register_buffer("extended", _row(extended), persistent=False)
        self.general = _column(encoder, "max_flashes")
        self.red = _column(encoder, "max_red_flashes")
        self.sustained = _column(encoder, "extended_s")

    def forward(self, features: Tensor) -> Tensor:
        """Args: the flash analyzer's measurements [B, K]. Returns logits [B, policies]."""
        flashes = torch.max(
            features[:, self.general : self.general + 1], features[:, self.red : self.red + 1]
        )
        extended = features[:, self.sustained : self.sustained + 1]
        return torch.max(
            self.GAIN * (flashes - self.midpoint),
            self.EXTENDED_GAIN * (extended - self.extended),
        )


class LoudnessRule(PolicyHead):
    """ATSC A/85: integrated loudness within ``tolerance_lu`` of ``target_lufs`` passes.

    Logit = 2 x (|integrated_lufs - target_lufs| - tolerance_lu): the margin in LU, doubled;
    1 LU outside the window scores 0.88, 1 LU inside 0.12. Silence reads -70 LUFS: too quiet.

    Rule parameters: ``target_lufs`` (-24), ``tolerance_lu`` (2).
    """

    GAIN = 2.0
    # within 0.5 LU of the tolerance window's edge (1.5 to 2.5 LU from the target): review
    REVIEW: ClassVar[ReviewMargin] = ReviewMargin(0.5, "LU", "integrated_lufs", GAIN * 0.5)
    target: Tensor
    tolerance: Tensor

    def __init__(
        self, encoder: Encoder, policy_index: Sequence[int], rules: Sequence[Mapping[str, Any]]
    ) -> None:
        super().__init__()
        self.policy_index = tuple(policy_index)
        p = rule_parameters("loudness", rules, {"target_lufs": -24.0, "tolerance_lu": 2.0})
        self.register_buffer("target", _row(p["target_lufs"]), persistent=False)
        self.register_buffer("tolerance", _row(p["tolerance_lu"]), persistent=False)
        self.lufs = _column(encoder, "integrated_lufs")

    def forward(self, features: Tensor) -> Tensor:
        """Args: the loudness analyzer's measurements [B, K]. Returns logits [B, policies]."""
        lufs = features[:, self.lufs : self.lufs + 1]
        return self.GAIN * ((lufs - self.target).abs() - self.tolerance)


class QualityRule(PolicyHead):
    """Low quality: Laplacian variance below ``min_laplacian_var`` or a short side below
    ``min_short_side`` pixels (unless the image is a standard display size).

    Logit = max(2 ln(min_laplacian_var / laplacian_var), 10 ln((min_short_side - 0.5) /
    short_side)): half the minimum variance scores 0.80; a 399 px side fails and 400 passes
    (the boundary sits half a pixel below the minimum); 300 px scores 0.95. A minimum of 0
    turns its check off; a ``standard_size`` of 1 (a 300x250 banner, say: as large as its
    placement) turns the size check off for that image.

    Rule parameters: ``min_laplacian_var`` (100), ``min_short_side`` (400).
    """

    BLUR_GAIN = 2.0
    SIZE_GAIN = 10.0
    # a Laplacian variance within a factor 1.25 of the minimum (80 to 125 for 100) goes to
    # review; the same logits put a short side within 4.6 % of the minimum (383 to 417 px
    # for 400) in review
    REVIEW: ClassVar[ReviewMargin] = ReviewMargin(
        1.25, "ratio", "laplacian_var", BLUR_GAIN * math.log(1.25)
    )
    log_variance: Tensor
    log_side: Tensor

    def __init__(
        self, encoder: Encoder, policy_index: Sequence[int], rules: Sequence[Mapping[str, Any]]
    ) -> None:
        super().__init__()
        self.policy_index = tuple(policy_index)
        p = rule_parameters(
            "image_quality", rules, {"min_laplacian_var": 100.0, "min_short_side": 400.0}
        )
        variance = [math.log(v) if v > 0 else -OFF for v in p["min_laplacian_var"]]
        side = [math.log(s - 0.5) if s > 0.5 else -OFF for s in p["min_short_side"]]
        self.register_buffer("log_variance", _row(variance), persistent=False)
        self.register_buffer("log_side", _row(side), persistent=False)
        self.variance = _column(encoder, "laplacian_var")
        self.side = _column(encoder, "short_side")
        self.standard = _column(encoder, "standard_size")

    def forward(self, features: Tensor) -> Tensor:
        """Args: the quality analyzer's measurements [B, K]. Returns logits [B, policies]."""
        variance = features[:, self.variance : self.variance + 1].clamp(min=1e-12)
        side = features[:, self.side : self.side + 1].clamp(min=1.0)
        standard = features[:, self.standard : self.standard + 1]
        return torch.max(
            self.BLUR_GAIN * (self.log_variance - variance.log()),
            self.SIZE_GAIN * (self.log_side - side.log()) - OFF * standard,
        )
