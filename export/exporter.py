"""From a checkpoint to an artifact: trace, check parity, pick the precision, compile, save."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ensemble.batch import AdPreparer, PreparedAd
from ensemble.builder import build_ensemble
from ensemble.config import load_config
from ensemble.model import AdPolicyEnsemble
from ensemble.pretrained import CONFIG_FILE, from_pretrained
from export.artifact import LAYOUTS, BucketGraph, fixed_lengths, save_artifact
from export.buckets import BucketGraphs, bucket_lengths, cut_to
from export.calibration import calibration_ads, cycled_batch, random_batch
from export.opcheck import check_operators
from export.precision import ParityGate, PrecisionPlan, choose_precision, with_precision
from export.trace import (
    PARITY_BATCH_SIZES,
    TRACE_BATCH_SIZE,
    InputsAt,
    check_parity,
    quiet_jit,
    save_graph,
    trace_graph,
)

log = logging.getLogger(__name__)

TARGETS = ("torchscript", "neuron", "neuronx", "torch-export")
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        target: ``"torchscript"``, ``"neuron"``, ``"neuronx"`` or ``"torch-export"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        cast_method: Preferred way to run an encoder in 16 bits (``"weights"``/``"autocast"``).
        calibration: A JSONL file of ads for the checks; None for generated sample ads.
        batch_sizes: Batch sizes of the traced-vs-eager parity check.
        gate: When a 16-bit graph is accepted.
        random_items: Random items added to the calibration set.
        neuron_fallback: Inf1: let unsupported operators run on the CPU.
        graph_per_bucket: One graph per combination of length buckets (each traced or
            compiled at its lengths, routed by input shape when loaded); None: only the Neuron
            targets, whose compilers fix every shape. A TorchScript trace keeps lengths free.
    """

    target: str = "torchscript"
    precision: str = "fp32"
    cast_method: str = "weights"
    calibration: Path | None = None
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES
    gate: ParityGate = field(default_factory=ParityGate)
    random_items: int = CALIBRATION_BATCH
    neuron_fallback: bool = True
    graph_per_bucket: bool | None = None

    @property
    def per_bucket(self) -> bool:
        """Whether this export writes one graph per length bucket combination."""
        if self.graph_per_bucket is None:
            return self.target in ("neuron", "neuronx")
        if self.graph_per_bucket and self.target == "torch-export":
            raise ValueError("graph_per_bucket: a torch-export package keeps its lengths free")
        return self.graph_per_bucket


class CheckInputs:
    """The inputs every check runs on: random ones and real prepared ads.

    Args:
        model: The ensemble (its ``example_inputs`` give the random inputs).
        real: Prepared ads.
        preparer: The preparation that made them (its ``collate`` batches them).
        random_items: Random items in the calibration set.
    """

    def __init__(
        self,
        model: AdPolicyEnsemble,
        real: Sequence[PreparedAd],
        preparer: AdPreparer,
        random_items: int = CALIBRATION_BATCH,
    ) -> None:
        self.model = model
        self.real = list(real)
        self.preparer = preparer
        self.random_items = random_items

    def random(self, batch_size: int) -> tuple[Tensor, ...]:
        """Fresh random inputs (seeded by the batch size, unlike the trace's example)."""
        return random_batch(
            self.model.example_inputs, batch_size, seed=1000 + batch_size, dense=self.preparer.dense
        )

    def real_batch(self, batch_size: int) -> tuple[Tensor, ...]:
        """Real prepared ads, cycled to ``batch_size``."""
        return cycled_batch(self.preparer, self.real, batch_size)

    def example(self, batch_size: int = TRACE_BATCH_SIZE) -> tuple[Tensor, ...]:
        """The inputs the graph is traced with."""
        return random_batch(
            self.model.example_inputs, batch_size, seed=0, dense=self.preparer.dense
        )

    def shortest(self, batch_size: int) -> tuple[Tensor, ...]:
        """Random inputs with each length-bucketed input (token ids and masks) cut to its
        shortest bucket: the graph, traced at the longest, must run at every length."""
        shortest = bucket_lengths(self.preparer.buckets)[0]
        return cut_to(self.random(batch_size), self.model.input_names, shortest)

    def free_lengths(self) -> list[tuple[int, str, int]]:
        """``(input position, dimension name, longest)`` of each length-bucketed input: one
        name per encoder, so its token ids and mask share the length."""
        return [
            (position, f"{name.split('.')[0]}_length", self.preparer.buckets[name][-1])
            for position, name in enumerate(self.model.input_names)
            if len(self.preparer.buckets.get(name, ())) > 1
        ]

    def by_kind(self) -> dict[str, InputsAt]:
        """Input kind -> batch size -> inputs, for :func:`export.trace.check_parity`."""
        kinds: dict[str, InputsAt] = {"random": self.random}
        if self.preparer.buckets:
            kinds["shortest-bucket"] = self.shortest
        if self.real:
            kinds["real"] = self.real_batch
        return kinds

    def calibration(self) -> list[tuple[Tensor, ...]]:
        """The calibration set: every real ad once, then random items, in batches."""
        step = CALIBRATION_BATCH
        batches = [
            self.preparer.collate(self.real[i : i + step]).inputs
            for i in range(0, len(self.real), step)
        ]
        if self.random_items:
            batches.append(
                random_batch(
                    self.model.example_inputs, self.random_items, seed=7, dense=self.preparer.dense
                )
            )
        return batches


class PlanGraphs:
    """The traced graph of each precision plan, traced once and kept for the export.

    Args:
        model: The fp32 ensemble.
        inputs: The check inputs (the trace example and the calibration set).
    """

    def __init__(self, model: AdPolicyEnsemble, inputs: CheckInputs) -> None:
        self.model = model
        self.inputs = inputs
        self.graphs: dict[Any, tuple[AdPolicyEnsemble, torch.jit.ScriptModule]] = {}

    def get(self, plan: PrecisionPlan) -> tuple[AdPolicyEnsemble, torch.jit.ScriptModule]:
        """The plan's eager module and its traced graph."""
        if plan.key not in self.graphs:
            module = with_precision(self.model, plan)
            self.graphs[plan.key] = module, trace_graph(module, self.inputs.example())
        return self.graphs[plan.key]

    def scores(self, plan: PrecisionPlan) -> list[Tensor]:
        """The plan's graph's scores on the calibration set, one [batch, policies] per batch."""
        graph = self.get(plan)[1]
        with torch.no_grad(), quiet_jit():
            return [graph(*batch)[0] for batch in self.inputs.calibration()]


def export_model(
    model: AdPolicyEnsemble,
    output: str | Path,
    options: ExportOptions | None = None,
    *,
    source: dict[str, Any] | None = None,
) -> Path:
    """Export an fp32 ensemble to an artifact directory.

    Steps: trace in fp32 and check it against eager on random and real inputs at every batch
    size; choose the precision (16-bit graphs checked against the fp32 graph on the
    calibration set); build the target's graph, check it against its eager module; save.

    Args:
        model: The ensemble, with its config attached (``from_pretrained``).
        output: The artifact directory.
        options: Target, precision, calibration, parity settings.
        source: Provenance recorded in the manifest.

    Returns:
        The artifact directory.
    """
    options = options or ExportOptions()
    if options.target not in TARGETS:
        raise ValueError(f"unknown target {options.target!r}; known: {TARGETS}")
    if options.target in ("neuron", "neuronx"):
        from export.neuron import import_sdk

        import_sdk(options.target)  # fail before minutes of tracing and checks
    model.eval()
    preparer = AdPreparer(
        model.config,
        dense=LAYOUTS[options.target] == "dense",
        overrides=fixed_lengths(model.config, options.target, options.per_bucket),
    )
    inputs = CheckInputs(
        model, calibration_ads(preparer, options.calibration), preparer, options.random_items
    )
    graphs = PlanGraphs(model, inputs)
    fp32_graph = graphs.get(PrecisionPlan())[1]
    fp32_parity = check_parity(model, fp32_graph, inputs.by_kind(), batch_sizes=options.batch_sizes)
    operators = check_operators(fp32_graph, "neuron")
    log.info("%s", operators.format())
    plan, precision = choose_precision(
        model, options.precision, graphs.scores, gate=options.gate, method=options.cast_method
    )
    parity, saves, target_options = _build_target(plan, options, graphs, fp32_parity)
    return save_artifact(
        output,
        model=model,
        save_graph=saves[-1].save,
        bucket_graphs=saves if options.per_bucket else (),
        target=options.target,
        parity=parity,
        precision=precision,
        source=source,
        target_options=target_options,
        neuron_check=operators.to_json(),
    )


def _build_target(
    plan: PrecisionPlan,
    options: ExportOptions,
    graphs: PlanGraphs,
    fp32_parity: dict[str, Any],
) -> tuple[dict[str, Any], list[BucketGraph], dict[str, Any]]:
    """The target graph's parity report, its graphs with their save functions (one per
    combination of length buckets, longest last, with ``per_bucket``; else one), and target
    options."""
    model, inputs = graphs.model, graphs.inputs
    combos = bucket_lengths(inputs.preparer.buckets) if options.per_bucket else [{}]
    names = model.input_names
    if options.target in ("neuron", "neuronx"):
        from export.neuron import compile_graph, compiler_args, data_parallel

        example = inputs.example(1)
        compiled = [
            (
                lengths,
                compile_graph(
                    model,
                    cut_to(example, names, lengths),
                    options.target,
                    plan,
                    fallback=options.neuron_fallback,
                ),
            )
            for lengths in combos
        ]
        routed = BucketGraphs(names, compiled)
        # Inf2/Trn graphs have the compiled batch size; DataParallel batches them dynamically
        runner = (
            routed.map(lambda g: data_parallel(g, "neuronx"))
            if options.target == "neuronx"
            else routed
        )
        parity = check_parity(
            model,
            runner,
            inputs.by_kind(),
            batch_sizes=options.batch_sizes,
            tolerance=options.gate.max_score_diff if plan.methods else fp32_parity["tolerance"],
        )
        args = compiler_args(options.target, plan)
        return parity, _savers(compiled), {"compiler_args": args}
    module, graph = graphs.get(plan)
    if options.target == "torch-export":
        from export.torch_export import export_package

        package = export_package(module, inputs.example(), inputs.free_lengths())
        parity = check_parity(
            module, package.load(), inputs.by_kind(), batch_sizes=options.batch_sizes
        )
        return parity, [BucketGraph({}, package.save)], {"dynamic_batch": True}
    if options.per_bucket:
        traced = [
            (lengths, trace_graph(module, cut_to(inputs.example(), names, lengths)))
            for lengths in combos
        ]
        routed = BucketGraphs(names, traced)
        parity = check_parity(module, routed, inputs.by_kind(), batch_sizes=options.batch_sizes)
        return parity, _savers(traced), {}
    parity = (
        fp32_parity
        if module is model
        else check_parity(module, graph, inputs.by_kind(), batch_sizes=options.batch_sizes)
    )
    return parity, [BucketGraph({}, partial(save_graph, graph))], {}


def _savers(graphs: Sequence[tuple[dict[str, int], Any]]) -> list[BucketGraph]:
    return [BucketGraph(lengths, partial(save_graph, graph)) for lengths, graph in graphs]


def load_model(source: str | Path) -> AdPolicyEnsemble:
    """A checkpoint directory (``save_pretrained`` output), or a model config (YAML/JSON path
    or the name of one in ``ensemble/configs``) built with untrained heads."""
    if (Path(source) / CONFIG_FILE).is_file():
        return from_pretrained(source)
    config = load_config(source)
    log.warning("%s is a config, not a checkpoint: its learned heads are untrained", source)
    return build_ensemble(config)


def export_checkpoint(
    checkpoint: str | Path, output: str | Path, options: ExportOptions | None = None
) -> Path:
    """Export a checkpoint directory (or a config, see :func:`load_model`)."""
    model = load_model(checkpoint)
    return export_model(model, output, options, source={"checkpoint": str(checkpoint)})
