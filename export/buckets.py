"""One graph per length bucket, for compilers that bake every shape into the graph.

A TorchScript trace keeps the token dimension free (every length is computed from
``aten::size``), so the torchscript target exports ONE graph for every bucket. A Neuron
compiler fixes every input shape at compile time, so the neuron / neuronx targets (and the
torchscript target with ``--graph-per-bucket``) export one graph per combination of length
buckets (:func:`bucket_lengths`), listed in the manifest (``bucket_graphs``); loaded, they are
called as one graph (:class:`BucketGraphs`): each batch, padded to its bucket by the
preparation, goes to the graph of its lengths.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

Lengths = dict[str, int]  # bucketed input name -> its length


def bucket_lengths(buckets: Mapping[str, Sequence[int]]) -> list[Lengths]:
    """Every combination of length buckets, longest last; an encoder's inputs share a length.

    Args:
        buckets: Bucketed input name (``"<encoder key>.<input>"``) -> its buckets
            (:attr:`ensemble.batch.AdPreparer.buckets`).
    """
    groups: dict[str, Sequence[int]] = {}
    for name, lengths in buckets.items():
        groups.setdefault(name.split(".")[0], lengths)
    combos = []
    for choice in itertools.product(*groups.values()):
        length_of = dict(zip(groups, choice, strict=True))
        combos.append({name: length_of[name.split(".")[0]] for name in buckets})
    return combos


def cut_to(inputs: Sequence[Tensor], names: Sequence[str], lengths: Lengths) -> tuple[Tensor, ...]:
    """Graph inputs with each bucketed one cut to its length (contiguous, as collated)."""
    return tuple(
        t[:, : lengths[n]].contiguous() if n in lengths else t
        for n, t in zip(names, inputs, strict=True)
    )


def bucket_file(lengths: Lengths, suffix: str) -> str:
    """The file name of a bucket's graph, e.g. ``model.text-16.pt``."""
    parts = sorted({f"{name.split('.')[0]}-{length}" for name, length in lengths.items()})
    return f"model.{'.'.join(parts)}{suffix}"


class BucketGraphs:
    """Graphs compiled at fixed lengths, called as one graph.

    Args:
        input_names: The graph's inputs, in order.
        graphs: One ``(lengths, graph)`` per bucket combination.
    """

    def __init__(self, input_names: Sequence[str], graphs: Sequence[tuple[Lengths, Any]]) -> None:
        self.input_names = list(input_names)
        self.names = sorted(graphs[0][0])
        self.positions = [self.input_names.index(n) for n in self.names]
        self.graphs = {tuple(lengths[n] for n in self.names): g for lengths, g in graphs}

    def __call__(self, *inputs: Tensor) -> Any:
        key = tuple(int(inputs[p].shape[1]) for p in self.positions)
        graph = self.graphs.get(key)
        if graph is None:
            raise ValueError(
                f"no graph for input lengths {dict(zip(self.names, key, strict=True))}; "
                f"compiled: {sorted(self.graphs)} (lengths of {self.names})"
            )
        return graph(*inputs)

    def map(self, wrap: Callable[[Any], Any]) -> BucketGraphs:
        """The same routing over ``wrap(graph)`` of every graph (e.g. Neuron's DataParallel)."""
        graphs = [
            (dict(zip(self.names, key, strict=True)), wrap(g)) for key, g in self.graphs.items()
        ]
        return BucketGraphs(self.input_names, graphs)
