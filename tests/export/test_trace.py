"""Tracing the whole ensemble into one graph, checked against eager at several batch sizes."""

from __future__ import annotations

import copy

import pytest
import torch

from encoders.base import MODALITIES
from ensemble.batch import AdPreparer
from export.calibration import calibration_ads, cycled_batch, random_batch
from export.exporter import CheckInputs
from export.opcheck import graph_operators
from export.trace import FP32_TOLERANCE, ParityError, check_parity, trace_graph

from .conftest import SMALL_BATCHES


@pytest.fixture(scope="module")
def inputs(small_export_model) -> CheckInputs:
    preparer = AdPreparer(small_export_model.config)
    return CheckInputs(small_export_model, calibration_ads(preparer), preparer)


@pytest.fixture(scope="module")
def graph(small_export_model, inputs) -> torch.jit.ScriptModule:
    return trace_graph(small_export_model, inputs.example())


def test_one_graph_holds_every_encoder_head_and_fusion(small_export_model, graph) -> None:
    places = {p for where in graph_operators(graph).values() for p in where}
    for key in small_export_model.keys:
        assert f"encoders.{key}" in places
        assert f"heads.{key}" in places
    assert "fusion" in places
    assert not any(n.kind() == "prim::PythonOp" for n in graph.inlined_graph.nodes())


def test_parity_on_random_and_real_inputs_at_every_batch_size(
    small_export_model, graph, inputs
) -> None:
    report = check_parity(small_export_model, graph, inputs.by_kind(), batch_sizes=SMALL_BATCHES)
    assert report["passed"]
    assert report["max_abs_diff"] <= FP32_TOLERANCE
    seen = {(c["inputs"], c["batch_size"]) for c in report["checks"]}
    kinds = ("random", "shortest-bucket", "real")  # shortest: the text at its first bucket
    assert seen == {(k, b) for k in kinds for b in SMALL_BATCHES}
    for check in report["checks"]:
        assert set(check) >= {"scores", "modality_scores", "measurements"}


def test_real_inputs_cover_every_modality(small_export_model, inputs) -> None:
    assert len(inputs.real) >= 10
    presence = torch.tensor([item.presence for item in inputs.real])
    assert presence.all(dim=1).any(), "an ad with all four modalities"
    assert (presence.sum(dim=1) == 1).any(), "single-modality ads"
    batch = dict(
        zip(inputs.preparer.input_names, cycled_batch(inputs.preparer, inputs.real, 7), strict=True)
    )
    cycled = presence[torch.arange(7) % len(inputs.real)]
    for name, tensor in batch.items():
        if name.startswith("index."):
            assert tensor.shape == (7,)
        else:  # packed: one row per ad that has the input's modality
            modality = inputs.preparer.modality_of[name]
            assert tensor.shape[0] == int(cycled[:, MODALITIES.index(modality)].sum())


def test_a_different_graph_fails_the_parity_check(small_export_model, inputs) -> None:
    other = copy.deepcopy(small_export_model)
    with torch.no_grad():
        other.heads["text"].net[-1].bias.add_(0.5)
    wrong = trace_graph(other, inputs.example())
    with pytest.raises(ParityError, match="differs from eager"):
        check_parity(small_export_model, wrong, {"random": inputs.random}, batch_sizes=(3,))


def test_fresh_inputs_differ_from_the_trace_example(small_export_model, inputs) -> None:
    example = inputs.example(2)
    fresh = inputs.random(2)
    assert not torch.equal(example[0], fresh[0])
    again = random_batch(small_export_model.example_inputs, 2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(example, again, strict=True))
