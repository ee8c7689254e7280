"""Monitoring of the deployed ensemble: a baseline, captured production, a drift report.

The baseline summarises the model on validation data (``baseline.build_baseline``), the handler
captures one summary per scored ad (``serve.capture``), and ``report.compare`` turns both into
violations against :class:`report.Thresholds`; ``html.render_html`` draws the plots.
"""

from serve.monitor.baseline import attach_baseline, build_baseline, load_baseline
from serve.monitor.observe import Observations
from serve.monitor.report import Thresholds, compare

__all__ = [
    "Observations",
    "Thresholds",
    "attach_baseline",
    "build_baseline",
    "compare",
    "load_baseline",
]
