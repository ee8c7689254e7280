"""Neuron targets without the SDK: compiler arguments, the clear error, the operator check."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from encoders import get_encoder, list_encoders
from ensemble import ModelConfig, build_ensemble
from ensemble.cli import main
from ensemble.pretrained import from_pretrained
from ensemble.scoring import DEFAULT_DIR
from export.exporter import ExportOptions, export_model
from export.neuron import NeuronSDKError, compile_graph, compiler_args, data_parallel, import_sdk
from export.opcheck import check_operators, graph_operators, location_of, read_op_list
from export.precision import PrecisionPlan
from export.trace import trace_graph

from ..ensemble.conftest import small_config_json

SDK_PRESENT = any(importlib.util.find_spec(m) for m in ("torch_neuron", "torch_neuronx"))
needs_no_sdk = pytest.mark.skipif(SDK_PRESENT, reason="a Neuron SDK is installed here")

# The text encoder with the Hugging Face defaults uses these; the default settings use none.
HF_TEXT_OPS = {
    "aten::embedding",
    "aten::gather",
    "aten::index",
    "aten::scaled_dot_product_attention",
}


@pytest.mark.parametrize(
    ("target", "dtype", "scope", "expected"),
    [
        ("neuron", "fp32", "none", ["--fast-math", "none"]),
        ("neuron", "bf16", "all", ["--fast-math", "fp32-cast-all"]),
        ("neuron", "fp16", "all", ["--fast-math", "fp32-cast-all-fp16"]),
        ("neuron", "bf16", "matmul", ["--fast-math", "fp32-cast-matmult-bf16"]),
        ("neuron", "fp16", "matmul", ["--fast-math", "fp32-cast-matmult-fp16"]),
        ("neuronx", "fp32", "none", ["--auto-cast", "none"]),
        ("neuronx", "bf16", "all", ["--auto-cast", "all", "--auto-cast-type", "bf16"]),
        ("neuronx", "fp16", "all", ["--auto-cast", "all", "--auto-cast-type", "fp16"]),
        ("neuronx", "bf16", "matmul", ["--auto-cast", "matmult", "--auto-cast-type", "bf16"]),
        ("neuronx", "fp16", "matmul", ["--auto-cast", "matmult", "--auto-cast-type", "fp16"]),
    ],
)
def test_compiler_args_per_precision(target, dtype, scope, expected) -> None:
    plan = PrecisionPlan(dtype, scope, {"text": "weights"} if scope != "none" else {})
    assert compiler_args(target, plan) == expected


def test_compiler_args_refuse_unknown_targets() -> None:
    with pytest.raises(ValueError, match="unknown Neuron target"):
        compiler_args("tpu", PrecisionPlan())


@needs_no_sdk
@pytest.mark.parametrize(
    ("target", "package", "torch_max"),
    [("neuron", "torch-neuron", "1.13"), ("neuronx", "torch-neuronx", "2.9")],
)
def test_missing_sdk_says_what_to_install(target, package, torch_max, small_export_model) -> None:
    with pytest.raises(NeuronSDKError) as info:
        import_sdk(target)
    message = str(info.value)
    assert f"pip install {package}" in message
    assert "https://pip.repos.neuron.amazonaws.com" in message
    assert f"PyTorch <= {torch_max}" in message
    assert "placeholders" in message
    inputs = small_export_model.example_inputs(1)
    with pytest.raises(NeuronSDKError):
        compile_graph(small_export_model, inputs, target, PrecisionPlan())
    with pytest.raises(NeuronSDKError):
        data_parallel(torch.nn.Identity(), target)


@needs_no_sdk
def test_neuron_export_fails_fast_and_writes_nothing(small_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "inf2"
    code = main(["export", str(small_checkpoint), "-o", str(out), "--target", "neuronx"])
    assert code == 2
    assert "torch-neuronx" in capsys.readouterr().err
    assert not out.exists()


@needs_no_sdk
def test_export_model_raises_the_sdk_error(small_export_model, tmp_path) -> None:
    with pytest.raises(NeuronSDKError, match="Inf1"):
        export_model(small_export_model, tmp_path, ExportOptions(target="neuron"))


def test_lists_ship_as_package_data_with_their_source() -> None:
    inf1 = read_op_list("neuron_inf1_supported_ops.txt")
    assert len(inf1) == 167
    assert {"aten::index_select", "aten::softmax", "aten::_convolution"} <= inf1
    assert "aten::embedding" not in inf1
    from export.opcheck import DATA_DIR

    header = (DATA_DIR / "neuron_inf1_supported_ops.txt").read_text().splitlines()[:3]
    assert any("aws-neuron/aws-neuron-sdk" in line for line in header)
    assert read_op_list("neuron_inf1_limited_ops.txt") >= {"aten::where", "aten::norm"}


def test_location_of_names_the_ensemble_part() -> None:
    assert location_of("__module.encoders.text/__module.encoders.text.model") == "encoders.text"
    assert location_of("__module.heads.image/__module.heads.image.net") == "heads.image"
    assert location_of("__module.fusion") == "fusion"
    assert location_of("") == "ensemble"


def test_hugging_face_defaults_are_reported_in_the_text_encoder(tiny_bert_dir) -> None:
    """Before the reformulation: the four text operators, each placed in encoders.text."""
    data = small_config_json(tiny_bert_dir)
    data["encoders"] = {
        "text": {**data["encoders"]["text"], "attention": "sdpa", "neuron_friendly": False}
    }
    data["policies"] = [{"name": "offensive_language", "heads": ["text"]}]
    model = build_ensemble(ModelConfig.from_json(data))
    report = check_operators(trace_graph(model, model.example_inputs(2)))
    assert set(report.unsupported) == HF_TEXT_OPS
    for op in HF_TEXT_OPS:
        assert report.where(op) == ["encoders.text"]
    assert report.by_location() == {"encoders.text": sorted(HF_TEXT_OPS)}
    assert "aten::embedding" in report.format()


def test_neuronx_list_judges_aten_operators_only(small_export_model) -> None:
    report = check_operators(trace_graph(small_export_model, small_export_model.example_inputs(2)))
    informative = check_operators(
        trace_graph(small_export_model, small_export_model.example_inputs(2)), "neuronx"
    )
    assert report.unsupported == ()
    assert informative.unsupported
    assert all(op.startswith("aten::") for op in informative.unsupported)


@pytest.mark.slow
def test_the_real_default_graph_needs_no_cpu_partition() -> None:
    """The embedded default model's traced graph against the Inf1 list, part by part."""
    model = from_pretrained(DEFAULT_DIR)
    graph = trace_graph(model, model.example_inputs(2))
    report = check_operators(graph, "neuron")
    assert report.unsupported == (), report.format()
    assert report.limited == ()
    operators = graph_operators(graph)
    assert not HF_TEXT_OPS & set(operators)
    assert {"aten::index_select", "aten::softmax", "aten::matmul"} <= set(operators)
    assert "encoders.text" in report.where("aten::index_select")  # embedding lookups
    places = {p for where in operators.values() for p in where}
    assert {f"encoders.{k}" for k in model.keys} <= places


@pytest.mark.parametrize("name", list_encoders())
def test_every_registered_encoder_traces_to_listed_operators(name: str) -> None:
    encoder = get_encoder(name).eval()
    report = check_operators(trace_graph(encoder, encoder.example_inputs(1)))
    assert report.unsupported == (), report.format()
