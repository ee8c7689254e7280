"""Which operators of the traced graph fall outside Neuron's published supported lists.

No SDK needed. An operator outside the list is partitioned to the CPU by ``torch.neuron.trace``
(``fallback=True``), which breaks the one-graph promise; the report names each one and the
encoder (or ensemble part) it occurs in, read from the traced graph's module scopes.

The lists ship in ``export/data/`` with their source in their header: the Inf1 list (neuron-cc)
is the meaningful check; the Inf2/Trn list (neuronx) is a training list and informative only.
Caveat: this graph is traced with this machine's torch (2.11); torch-neuron traces under
PyTorch <= 1.13, where a few operators are spelled differently.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

DATA_DIR = Path(__file__).parent / "data"
SUPPORTED_LISTS = {
    "neuron": "neuron_inf1_supported_ops.txt",
    "neuronx": "neuronx_supported_ops.txt",
}
LIMITED_LISTS = {"neuron": "neuron_inf1_limited_ops.txt"}
NOTES = {
    "neuron": "the Inf1 list: operators outside it run on the CPU",
    "neuronx": "informative only: a training list, far from complete for inference",
}


@lru_cache(maxsize=8)
def read_op_list(name: str) -> frozenset[str]:
    """Operator names of a list in ``export/data`` (``#`` lines are its provenance)."""
    lines = (DATA_DIR / name).read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _nodes(block: Any) -> Iterator[Any]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)


def location_of(scope: str) -> str:
    """The ensemble part a node's scope names: ``encoders.KEY``, ``heads.KEY``, ``fusion``,
    or ``ensemble`` for the parent module's own forward."""
    if not scope:
        return "ensemble"
    parts = scope.split("/")[0].removeprefix("__module.").split(".")
    return ".".join(parts[:2])


def graph_operators(graph: torch.jit.ScriptModule) -> dict[str, dict[str, int]]:
    """Operator -> ensemble part -> number of nodes, over the whole inlined graph.

    Args:
        graph: A graph traced by :func:`export.trace.trace_graph` in this process (the
            module scopes the parts come from are not kept by ``torch.jit.save``).
    """
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for node in _nodes(graph.inlined_graph):
        found[node.kind()][location_of(node.scopeName())] += 1
    return {op: dict(where) for op, where in sorted(found.items())}


@dataclass(frozen=True)
class OperatorReport:
    """The operators of a graph checked against a Neuron target's supported list.

    Attributes:
        target: ``"neuron"`` (Inf1) or ``"neuronx"`` (Inf2/Trn).
        source: The list file in ``export/data``.
        operators: Operator -> ensemble part -> count, for every operator of the graph.
        unsupported: Operators on neither the supported nor the limited list (only in the
            namespaces the list covers: the neuronx list has no ``prim::`` entries).
        limited: Operators with conditional support.
    """

    target: str
    source: str
    operators: Mapping[str, Mapping[str, int]]
    unsupported: tuple[str, ...]
    limited: tuple[str, ...]

    def where(self, op: str) -> list[str]:
        """The ensemble parts an operator occurs in."""
        return sorted(self.operators.get(op, {}))

    def by_location(self) -> dict[str, list[str]]:
        """Ensemble part -> its unsupported operators."""
        out: dict[str, list[str]] = defaultdict(list)
        for op in self.unsupported:
            for place in self.where(op):
                out[place].append(op)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "list": self.source,
            "operators": len(self.operators),
            "unsupported": {op: dict(self.operators[op]) for op in self.unsupported},
            "limited": {op: dict(self.operators[op]) for op in self.limited},
        }

    def format(self) -> str:
        """A table: each unsupported (and limited) operator, its node count and where."""
        lines = [
            f"Neuron operator check ({self.target}, list {self.source}; {NOTES[self.target]}): "
            f"{len(self.operators)} operators in the graph, {len(self.unsupported)} unsupported, "
            f"{len(self.limited)} with limited support"
        ]
        for label, ops in (("unsupported", self.unsupported), ("limited", self.limited)):
            for op in ops:
                where = ", ".join(f"{k} x{n}" for k, n in sorted(self.operators[op].items()))
                lines.append(f"  {label:<12} {op:<40} {where}")
        return "\n".join(lines)


def check_operators(graph: torch.jit.ScriptModule, target: str = "neuron") -> OperatorReport:
    """Check a freshly traced graph's operators against a target's published list."""
    if target not in SUPPORTED_LISTS:
        raise ValueError(
            f"no operator list for target {target!r}; known: {sorted(SUPPORTED_LISTS)}"
        )
    supported = read_op_list(SUPPORTED_LISTS[target])
    limited_list = read_op_list(LIMITED_LISTS[target]) if target in LIMITED_LISTS else frozenset()
    operators = graph_operators(graph)
    namespaces = {op.split("::")[0] for op in supported}  # a list without prim:: judges aten:: only
    outside = [op for op in operators if op.split("::")[0] in namespaces and op not in supported]
    return OperatorReport(
        target=target,
        source=SUPPORTED_LISTS[target],
        operators=operators,
        unsupported=tuple(op for op in outside if op not in limited_list),
        limited=tuple(op for op in outside if op in limited_list),
    )
