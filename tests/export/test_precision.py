"""Reduced precision: which encoders are cast, how, and the parity gate that accepts it."""

from __future__ import annotations

import pytest
import torch

from ensemble import ModelConfig, build_ensemble
from ensemble.batch import AdPreparer
from export.calibration import calibration_ads
from export.exporter import CheckInputs, ExportOptions, PlanGraphs, export_model
from export.precision import (
    MATMUL_HEAVY_SHARE,
    ParityGate,
    PrecisionError,
    ReducedPrecision,
    choose_precision,
    make_plan,
    matmul_share,
    policy_parity,
    scope_encoders,
    with_precision,
)
from export.trace import trace_graph

from ..ensemble.conftest import small_config_json


@pytest.fixture(scope="module")
def inputs(small_export_model) -> CheckInputs:
    preparer = AdPreparer(small_export_model.config)
    return CheckInputs(small_export_model, calibration_ads(preparer), preparer, random_items=8)


def _scorer(inputs: CheckInputs):
    return PlanGraphs(inputs.model, inputs).scores


def test_matmul_heavy_means_transformers(small_export_model) -> None:
    assert matmul_share(small_export_model.encoders["text"]) > 0.9
    for key in ("image", "audio", "video"):
        assert matmul_share(small_export_model.encoders[key]) < MATMUL_HEAVY_SHARE
    assert scope_encoders(small_export_model, "matmul") == ["text"]
    assert scope_encoders(small_export_model, "all") == ["audio", "image", "text", "video"]


def test_weights_method_falls_back_to_autocast_where_ops_refuse_16_bits(tiny_bert_dir) -> None:
    data = small_config_json(tiny_bert_dir)
    data["encoders"]["audio"]["stft"] = "fft"  # MKL's FFT has no bf16 kernel
    model = build_ensemble(ModelConfig.from_json(data))
    plan = make_plan(model, "bf16", "all", method="weights")
    assert plan.methods == {
        "audio": "autocast",
        "image": "weights",
        "text": "weights",
        "video": "weights",
    }
    assert make_plan(model, "fp32", "all").methods == {}
    autocast_first = make_plan(model, "bf16", "matmul", method="autocast")
    assert autocast_first.methods == {"text": "autocast"}


def test_cast_copy_keeps_heads_and_the_original_in_fp32(small_export_model) -> None:
    plan = make_plan(small_export_model, "bf16", "all")
    cast = with_precision(small_export_model, plan)
    text = cast.encoders["text"]
    assert isinstance(text, ReducedPrecision)
    assert next(text.inner.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in cast.heads.parameters())
    assert all(p.dtype == torch.float32 for p in small_export_model.parameters())
    assert cast.input_names == small_export_model.input_names
    inputs = small_export_model.example_inputs(3)
    with torch.no_grad():
        out = cast(*inputs)
        start = cast.input_names.index("text.input_ids")
        features = text(*inputs[start : start + 2])
    assert out.scores.dtype == torch.float32
    assert features.dtype == torch.float32
    graph = trace_graph(cast, inputs)
    assert "BFloat16" in str(graph.inlined_graph)


def test_policy_parity_counts_decisions(small_export_model) -> None:
    config = small_export_model.config  # three policies, thresholds 0.5
    want = [torch.tensor([[0.49, 0.10, 0.9]]), torch.tensor([[0.70, 0.95, 0.2]])]
    got = [torch.tensor([[0.51, 0.10, 0.9]]), torch.tensor([[0.70, 0.94, 0.2]])]
    parity = policy_parity(config, want, got)
    assert parity["offensive_language"]["agreement"] == pytest.approx(0.5)
    assert parity["offensive_language"]["max_abs_diff"] == pytest.approx(0.02)
    assert parity["violence"]["agreement"] == 1.0
    assert parity["violence"]["max_abs_diff"] == pytest.approx(0.01)
    assert parity["adult"] == {"max_abs_diff": 0.0, "agreement": 1.0, "items": 2}


def test_auto_accepts_bf16_within_the_gate(small_export_model, inputs) -> None:
    plan, report = choose_precision(small_export_model, "auto", _scorer(inputs))
    assert plan.dtype == "bf16"
    assert plan.scope == "all"
    assert report["tried"][0]["passed"] is True
    for policy in small_export_model.config.policy_names:
        assert report["parity"][policy]["max_abs_diff"] <= 0.01
        assert report["parity"][policy]["agreement"] >= 0.99
        assert report["parity"][policy]["items"] == len(inputs.real) + 8


def test_auto_falls_back_to_matmul_heavy_then_fp32(small_export_model, inputs) -> None:
    strict = ParityGate(max_score_diff=0.0, min_agreement=1.0)
    plan, report = choose_precision(small_export_model, "auto", _scorer(inputs), gate=strict)
    assert [t["scope"] for t in report["tried"]] == ["all", "matmul"]
    assert report["tried"][1]["encoders"] == ["text"]
    assert not any(t["passed"] for t in report["tried"])
    assert plan.dtype == "fp32"
    assert report["dtype"] == "fp32"
    assert "no 16-bit candidate passed" in report["reason"]


def test_an_explicit_request_that_fails_the_gate_is_refused(small_export_model, inputs) -> None:
    strict = ParityGate(max_score_diff=0.0, min_agreement=1.0)
    with pytest.raises(PrecisionError, match="fails the parity check"):
        choose_precision(small_export_model, "bf16", _scorer(inputs), gate=strict)


def test_bf16_artifact_records_its_plan(small_export_model, tmp_path) -> None:
    out = export_model(
        small_export_model, tmp_path, ExportOptions(precision="bf16", batch_sizes=(1, 7))
    )
    from export.artifact import load_artifact

    artifact = load_artifact(out)
    precision = artifact.manifest["precision"]
    assert precision["dtype"] == "bf16"
    assert precision["methods"] == dict.fromkeys(["audio", "image", "text", "video"], "weights")
    assert artifact.manifest["parity"]["max_abs_diff"] <= 1e-4  # traced vs its eager bf16
    inputs = small_export_model.example_inputs(4)
    with torch.no_grad():
        diff = (artifact.graph(*inputs)[0] - small_export_model(*inputs).scores).abs().max()
    assert 0 < float(diff) <= 0.01
