"""Reduced precision for the learned encoders, accepted only after a parity check against fp32.

A :class:`PrecisionPlan` names the encoders that run in 16 bits and how. Analyzers and score
heads always stay fp32: an analyzer's measurement is compared with a standard's threshold, and
a head's logit with a calibrated threshold.

Two ways to run an encoder in 16 bits, both recorded in the traced graph as explicit casts:

- ``weights``: the encoder's parameters are converted once and its floating inputs cast on
  entry (every op in 16 bits);
- ``autocast``: the encoder runs under ``torch.autocast`` while tracing, so matmuls and
  convolutions run in 16 bits on 16-bit copies of the weights made at every call, and the ops
  autocast keeps in fp32 stay fp32.

Measured on this machine's CPU (AMD EPYC, AVX-512 with AVX512_BF16, no fp16 arithmetic;
2 cores; MiniLM, batch 16, traced): fp32 0.290 s, bf16 autocast 0.093 s, bf16 weights
0.084 s; fp16 about 3.5x SLOWER than fp32 (1.0 s). So ``weights`` is the default method, with
``autocast`` as the fallback for an encoder whose ops refuse 16-bit tensors (e.g. MKL's FFT
under a torchaudio mel front end), and ``auto`` tries bf16.

``auto`` tries, in order, and records what it chose and why:

1. ``all``: every learned encoder in 16 bits;
2. ``matmul``: only the matmul-heavy learned encoders (transformers: at least half their FLOPs
   in dense matrix multiplications), the equivalent of Neuron's ``--fast-math
   fp32-cast-matmult`` / ``--auto-cast matmult``;
3. fp32.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from encoders.base import Encoder, PolicyHead
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
AUTO_DTYPE = "bf16"
CAST_METHODS = ("weights", "autocast")
SCOPES = ("all", "matmul")
MATMUL_OPS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
MATMUL_HEAVY_SHARE = 0.5


class PrecisionError(RuntimeError):
    """A requested reduced precision that failed its parity check against fp32."""


@dataclass(frozen=True)
class ParityGate:
    """When a reduced-precision graph is accepted, from its parity with fp32.

    Attributes:
        max_score_diff: Largest accepted |score difference| for any policy and ad.
        min_agreement: Smallest accepted fraction of ads whose decision (score >= threshold)
            is the same, for every policy.
    """

    max_score_diff: float = 0.01
    min_agreement: float = 0.99


@dataclass(frozen=True)
class PrecisionPlan:
    """Which encoders run in 16 bits, and how.

    Attributes:
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        scope: ``"none"`` (fp32), ``"all"`` learned encoders or the ``"matmul"``-heavy ones.
        methods: Encoder key -> ``"weights"`` or ``"autocast"``, for the encoders cast.
        reason: Why this plan was chosen.
    """

    dtype: str = "fp32"
    scope: str = "none"
    methods: Mapping[str, str] = field(default_factory=dict)
    reason: str = "fp32 requested"

    @property
    def encoders(self) -> list[str]:
        return sorted(self.methods)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What makes two plans build the same graph (the reason aside)."""
        return self.dtype, tuple(sorted(self.methods.items()))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "methods": dict(self.methods), "encoders": self.encoders}


class ReducedPrecision(Encoder):
    """An encoder run in 16 bits that returns fp32 features (the heads stay fp32).

    Args:
        inner: The encoder; with ``method="weights"`` its parameters are converted in place.
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        method: ``"weights"`` or ``"autocast"``.
    """

    def __init__(self, inner: Encoder, dtype: torch.dtype, method: str) -> None:
        super().__init__()
        if method not in CAST_METHODS:
            raise ValueError(f"unknown cast method {method!r}; known: {CAST_METHODS}")
        self.inner = inner.to(dtype) if method == "weights" else inner
        self.dtype = dtype
        self.method = method
        self.modality = inner.modality  # type: ignore[misc]
        self.kind = inner.kind  # type: ignore[misc]
        self.output_dim = inner.output_dim
        self.input_spec = inner.input_spec
        self.measurement_names = inner.measurement_names

    def forward(self, *inputs: Tensor) -> Tensor:
        """Args: the inner encoder's inputs. Returns its features [batch, output_dim], fp32."""
        if self.method == "autocast":
            with torch.autocast(inputs[0].device.type, dtype=self.dtype):
                out: Tensor = self.inner(*inputs)
        else:
            cast = [x.to(self.dtype) if x.is_floating_point() else x for x in inputs]
            out = self.inner(*cast)
        return out.float()

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        return self.inner.example_inputs(batch_size)


def with_precision(model: AdPolicyEnsemble, plan: PrecisionPlan) -> AdPolicyEnsemble:
    """A copy of ``model`` whose encoders named by ``plan`` run in reduced precision.

    The heads and fusion are shared with ``model``; the cast encoders are deep copies, so
    ``model`` itself stays fp32.
    """
    if not plan.methods:
        return model
    dtype = DTYPES[plan.dtype]
    encoders: dict[str, Encoder] = {}
    for key in model.keys:
        encoder = cast(Encoder, model.encoders[key])
        if key in plan.methods:
            encoder = ReducedPrecision(copy.deepcopy(encoder), dtype, plan.methods[key])
        encoders[key] = encoder
    heads = {key: cast(PolicyHead, model.heads[key]) for key in model.keys}
    reduced = AdPolicyEnsemble(model.config, encoders, heads, model.fusion)
    return reduced.eval()


def matmul_share(encoder: Encoder) -> float:
    """Fraction of the encoder's FLOPs (one example item) spent in dense matmuls.

    Convolutions are not counted: a transformer scores about 1.0, a CNN about 0.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(*encoder.example_inputs(1))
    counts = counter.get_flop_counts().get("Global", {})
    total = sum(counts.values())
    matmul = sum(v for op, v in counts.items() if str(op) in MATMUL_OPS)
    return matmul / total if total else 0.0


def learned_encoders(model: AdPolicyEnsemble) -> list[str]:
    """Keys of the learned encoders (analyzers never change precision)."""
    return [k for k in model.keys if model.encoders[k].kind == "learned"]


def scope_encoders(model: AdPolicyEnsemble, scope: str) -> list[str]:
    """The encoders a scope casts: ``all`` learned ones, or the ``matmul``-heavy ones."""
    keys = learned_encoders(model)
    if scope == "all":
        return keys
    if scope == "matmul":
        shares = {k: matmul_share(cast(Encoder, model.encoders[k])) for k in keys}
        return [k for k in keys if shares[k] >= MATMUL_HEAVY_SHARE]
    raise ValueError(f"unknown scope {scope!r}; known: {SCOPES}")


def runs_with(encoder: Encoder, dtype: torch.dtype, method: str) -> bool:
    """Whether the encoder runs at all in ``dtype`` with ``method`` (one example item)."""
    try:
        with torch.no_grad():
            ReducedPrecision(copy.deepcopy(encoder), dtype, method)(*encoder.example_inputs(1))
    except RuntimeError as err:
        log.info("%s does not run in %s with %s: %s", type(encoder).__name__, dtype, method, err)
        return False
    return True


def make_plan(
    model: AdPolicyEnsemble,
    dtype: str,
    scope: str,
    *,
    method: str = "weights",
    reason: str = "",
) -> PrecisionPlan:
    """The plan casting the scope's encoders to ``dtype``.

    Each encoder uses ``method``, else the other method when its ops refuse 16-bit tensors
    with the first (e.g. an FFT); one refusing both stays fp32.
    """
    if dtype == "fp32":
        return PrecisionPlan(reason=reason or "fp32 requested")
    methods: dict[str, str] = {}
    order = [method, *(m for m in CAST_METHODS if m != method)]
    for key in scope_encoders(model, scope):
        encoder = cast(Encoder, model.encoders[key])
        usable = next((m for m in order if runs_with(encoder, DTYPES[dtype], m)), None)
        if usable is None:
            log.warning("encoder %r stays fp32: it runs in %s with no cast method", key, dtype)
        else:
            methods[key] = usable
    return PrecisionPlan(dtype, scope, methods, reason or f"{dtype} on {scope} encoders")


def policy_parity(
    config: ModelConfig, reference: Sequence[Tensor], candidate: Sequence[Tensor]
) -> dict[str, dict[str, float]]:
    """Per policy: max |score difference| and decision agreement.

    Args:
        config: Policies and thresholds.
        reference: fp32 scores, one [batch, policies] tensor per calibration batch.
        candidate: The reduced-precision scores for the same batches.

    Returns:
        Policy name -> ``max_abs_diff``, ``agreement`` (fraction of ads with the same
        decision) and ``items``.
    """
    want = torch.cat([s.float() for s in reference])
    got = torch.cat([s.float() for s in candidate])
    report = {}
    for j, policy in enumerate(config.policies):
        same = (want[:, j] >= policy.threshold) == (got[:, j] >= policy.threshold)
        report[policy.name] = {
            "max_abs_diff": float((want[:, j] - got[:, j]).abs().max()),
            "agreement": float(same.float().mean()),
            "items": int(same.numel()),
        }
    return report


def passes(parity: Mapping[str, Mapping[str, float]], gate: ParityGate) -> bool:
    """Whether every policy is within the gate."""
    return all(
        p["max_abs_diff"] <= gate.max_score_diff and p["agreement"] >= gate.min_agreement
        for p in parity.values()
    )


Scorer = Callable[[PrecisionPlan], list[Tensor]]


def choose_precision(
    model: AdPolicyEnsemble,
    requested: str,
    score: Scorer,
    *,
    gate: ParityGate | None = None,
    method: str = "weights",
) -> tuple[PrecisionPlan, dict[str, Any]]:
    """Pick the precision plan, checking each candidate's scores against fp32.

    Args:
        model: The fp32 ensemble.
        requested: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        score: Runs the graph of a plan (traced, as exported) over the calibration set and
            returns its scores, one [batch, policies] tensor per calibration batch.
        gate: The acceptance thresholds.
        method: The preferred cast method.

    Returns:
        The plan and the precision report (the plan, every candidate tried with its
        per-policy parity and verdict, the gate).

    Raises:
        PrecisionError: An explicit 16-bit request whose parity fails the gate.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; known: {PRECISIONS}")
    gate = gate or ParityGate()
    report: dict[str, Any] = {"requested": requested, "gate": asdict(gate), "tried": []}
    if requested == "fp32":
        plan = PrecisionPlan()
        return plan, {**report, **plan.to_json()}
    reference = score(PrecisionPlan())
    dtype = AUTO_DTYPE if requested == "auto" else requested
    scopes = SCOPES if requested == "auto" else SCOPES[:1]
    tried: list[list[str]] = []
    for scope in scopes:
        plan = make_plan(model, dtype, scope, method=method)
        if not plan.methods or plan.encoders in tried:
            continue
        tried.append(plan.encoders)
        parity = policy_parity(model.config, reference, score(plan))
        ok = passes(parity, gate)
        report["tried"].append({**plan.to_json(), "parity": parity, "passed": ok})
        log.info("precision %s on %s: %s", dtype, plan.encoders, "accepted" if ok else "refused")
        if ok:
            reason = (
                f"{dtype} on {scope} encoders {plan.encoders}: every policy within "
                f"|diff| <= {gate.max_score_diff} and agreement >= {gate.min_agreement}"
            )
            chosen = PrecisionPlan(plan.dtype, plan.scope, plan.methods, reason)
            return chosen, {**report, **chosen.to_json(), "parity": parity}
    if requested != "auto":
        raise PrecisionError(
            f"{requested} fails the parity check against fp32 ({report['tried']}); "
            "use --precision auto to fall back, or fp32"
        )
    reason = (
        "no 16-bit candidate passed the parity check"
        if tried
        else f"no learned encoder runs in {dtype} here"
    )
    plan = PrecisionPlan(reason=reason)
    return plan, {**report, **plan.to_json()}
