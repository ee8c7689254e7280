"""AWS Neuron targets: ``neuron`` (Inf1, torch-neuron) and ``neuronx`` (Inf2/Trn, torch-neuronx).

The SDK is imported only on this path, and only from AWS's own package repository: the
packages of the same names on the public Python index are placeholders that raise
"WRONG PACKAGE" on import. Without the SDK every entry point raises :class:`NeuronSDKError`
saying what to install, where, and for which PyTorch.

The fp32 ensemble is compiled and the compiler casts (the precision plan becomes compiler
arguments, :func:`compiler_args`); its casts are graph-wide, so ``matmul`` is the choice that
keeps the analyzers' and heads' element-wise arithmetic in fp32. Batch size is dynamic: Inf1
graphs are compiled with ``dynamic_batch_size=True``; Inf2/Trn graphs get it from
``torch_neuronx.DataParallel`` (:func:`data_parallel`), which also spreads a batch over the
NeuronCores for serving.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from export.precision import PrecisionPlan

log = logging.getLogger(__name__)

NEURON_REPOSITORY = "https://pip.repos.neuron.amazonaws.com"


@dataclass(frozen=True)
class NeuronSDK:
    """What a Neuron target needs.

    Attributes:
        module: The module to import.
        packages: The pip packages providing it (from AWS's repository).
        instances: The instance families it compiles for.
        max_torch: The newest PyTorch the SDK supports.
    """

    module: str
    packages: str
    instances: str
    max_torch: str


SDKS = {
    "neuron": NeuronSDK("torch_neuron", "torch-neuron neuron-cc", "Inf1", "1.13"),
    "neuronx": NeuronSDK("torch_neuronx", "torch-neuronx neuronx-cc", "Inf2 / Trn1 / Trn2", "2.9"),
}


class NeuronSDKError(ImportError):
    """The Neuron SDK a target needs is not importable here."""


def import_sdk(target: str) -> ModuleType:
    """Import the SDK of ``target`` (registering its TorchScript operators).

    Returns:
        The module holding ``trace`` and ``DataParallel``: ``torch.neuron`` for ``neuron``,
        ``torch_neuronx`` for ``neuronx``.

    Raises:
        NeuronSDKError: The SDK is missing (or is the public index's placeholder).
    """
    sdk = SDKS[target]
    try:
        module = importlib.import_module(sdk.module)
    except ImportError as err:
        raise NeuronSDKError(
            f"--target {target} needs the AWS Neuron SDK for {sdk.instances} "
            f"({sdk.module}: {err}). Install it on a Neuron instance or build host from AWS's "
            f"repository, in an environment with PyTorch <= {sdk.max_torch} (this one has "
            f"{torch.__version__}): pip install {sdk.packages} --extra-index-url "
            f"{NEURON_REPOSITORY}. The packages of the same names on PyPI are placeholders: "
            "do not install those."
        ) from err
    return getattr(torch, "neuron") if target == "neuron" else module  # noqa: B009


def compiler_args(target: str, plan: PrecisionPlan) -> list[str]:
    """The compiler arguments casting as ``plan`` says.

    ``neuron-cc --fast-math``: ``none`` (fp32), ``fp32-cast-all[-fp16]`` (all),
    ``fp32-cast-matmult-{bf16,fp16}`` (matmul). ``neuronx-cc --auto-cast none | all | matmult``
    with ``--auto-cast-type bf16 | fp16``.

    Args:
        target: ``"neuron"`` or ``"neuronx"``.
        plan: The precision plan; its scope picks the cast, its dtype the 16-bit type.

    Returns:
        The argument list for ``compiler_args=``.
    """
    if target not in SDKS:
        raise ValueError(f"unknown Neuron target {target!r}; known: {sorted(SDKS)}")
    if plan.scope not in ("none", "all", "matmul"):
        raise ValueError(f"unknown precision scope {plan.scope!r}")
    cast = plan.scope != "none" and plan.dtype != "fp32"
    if target == "neuron":
        if not cast:
            return ["--fast-math", "none"]
        if plan.scope == "all":
            return ["--fast-math", "fp32-cast-all" + ("-fp16" if plan.dtype == "fp16" else "")]
        return ["--fast-math", f"fp32-cast-matmult-{plan.dtype}"]
    if not cast:
        return ["--auto-cast", "none"]
    mode = "all" if plan.scope == "all" else "matmult"
    return ["--auto-cast", mode, "--auto-cast-type", plan.dtype]


def compile_graph(
    model: nn.Module,
    example_inputs: Sequence[Tensor],
    target: str,
    plan: PrecisionPlan,
    *,
    fallback: bool = True,
    workdir: str | None = None,
) -> torch.jit.ScriptModule:
    """Compile the fp32 ensemble for a NeuronCore.

    Args:
        model: The fp32 ensemble, in eval mode.
        example_inputs: Inputs at the compiled batch size (1: any batch then works, split by
            dynamic batching).
        target: ``"neuron"`` or ``"neuronx"``.
        plan: The precision plan, turned into compiler arguments.
        fallback: Inf1 only: let operators outside neuron-cc's list run on the CPU; False
            makes such an operator a compile error (one graph, or nothing).
        workdir: Where the compiler keeps its intermediate files.

    Returns:
        The compiled TorchScript module (saved with ``torch.jit.save``).
    """
    sdk = import_sdk(target)
    args = compiler_args(target, plan)
    log.info("compiling for %s with %s", target, " ".join(args))
    inputs = tuple(example_inputs)
    compiled: torch.jit.ScriptModule
    if target == "neuron":
        compiled = sdk.trace(
            model, inputs, compiler_args=args, dynamic_batch_size=True, fallback=fallback
        )
    else:
        compiled = sdk.trace(model, inputs, compiler_args=args, compiler_workdir=workdir)
    return compiled


def data_parallel(graph: Any, target: str, device_ids: Sequence[int] | None = None) -> Any:
    """Replicate a compiled graph over NeuronCores, batches split along dim 0, any size.

    Args:
        graph: A graph compiled by :func:`compile_graph` (or loaded from an artifact).
        target: ``"neuron"`` or ``"neuronx"``.
        device_ids: NeuronCores to use; None for all those given to this process.

    Returns:
        The SDK's ``DataParallel`` module.
    """
    sdk = import_sdk(target)
    ids = list(device_ids) if device_ids is not None else None
    if target == "neuron":
        return sdk.DataParallel(graph, device_ids=ids, dim=0)
    return sdk.DataParallel(graph, device_ids=ids, dim=0, set_dynamic_batching=True)
