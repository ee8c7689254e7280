"""The graph-passes benchmark times the exported default on real generated media, and every
pass size scores the ads the same."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.graph_passes import sweep
from benchmarks.traffic_set import make
from ensemble.scoring import DEFAULT_DIR
from export.artifact import load_artifact
from export.exporter import ExportOptions, export_checkpoint


@pytest.mark.slow
def test_every_pass_size_scores_real_media_ads_the_same(tmp_path) -> None:
    path = make(tmp_path, ads=16, pool_size=1, seed=3)
    ads = [json.loads(line) for line in path.read_text().splitlines()]
    media = [ad for ad in ads if "audio" in ad or "video" in ad]
    assert len(media) >= 2
    options = ExportOptions(batch_sizes=(1, 2))
    artifact = load_artifact(export_checkpoint(DEFAULT_DIR, tmp_path / "artifact", options))
    rates, outs = sweep(artifact, media, tmp_path, batch=8, settings=[0, 1], rounds=1)
    whole, cut = outs[0], outs[1]
    assert rates[0] > 0
    assert rates[1] > 0
    assert whole.shape == (len(media), len(artifact.policy_names) + len(artifact.measurement_names))
    torch.testing.assert_close(cut, whole, atol=1e-6, rtol=0, equal_nan=True)
