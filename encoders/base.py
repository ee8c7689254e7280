"""The interface every encoder shares: inputs it declares, the preparation it owns, its width.

An encoder is an ``nn.Module`` that maps its own prepared tensors to ``[batch, output_dim]``:
an embedding for learned encoders, named measurements for deterministic analyzers. The
preparation (decode, resize, resample, tokenize) lives beside it as a plain Python object, so
offline scoring, training and the TorchServe handler run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import Tensor, nn

Modality = Literal["text", "image", "audio", "video"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "audio", "video")
EncoderKind = Literal["learned", "analyzer"]


@dataclass(frozen=True)
class InputSpec:
    """One graph input of an encoder, without the batch dimension.

    Attributes:
        name: Input name, unique within the encoder (the ensemble prefixes the encoder key).
        shape: Shape of one item at its longest, e.g. ``(128,)`` for token ids; the batch
            dimension is free.
        dtype: Tensor dtype.
        buckets: Lengths the item's first dimension may take, increasing and ending at
            ``shape[0]`` (empty: always ``shape[0]``). A batch is padded to the smallest bucket
            that holds its longest item (:func:`bucket_of`), so a short text pays for its
            bucket, not for the longest text the model accepts.
    """

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    buckets: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        spec = {"name": self.name, "shape": ["batch", *self.shape], "dtype": str(self.dtype)}
        return {**spec, "buckets": list(self.buckets)} if self.buckets else spec


def length_buckets(buckets: Sequence[int], longest: int, setting: str) -> tuple[int, ...]:
    """Checked length buckets: increasing and positive; those at or above ``longest`` give way
    to ``longest`` itself, always the last (lowering ``max_length`` needs no bucket edit).

    Args:
        buckets: The configured buckets.
        longest: The longest length accepted (``max_length``, samples of ``max_seconds``).
        setting: The setting's name, for the error.

    Raises:
        ValueError: A bucket that is not positive, repeats or is out of order.
    """
    values = tuple(int(b) for b in buckets)
    if any(b <= 0 for b in values) or list(values) != sorted(set(values)):
        raise ValueError(f"{setting} {list(values)}: need increasing positive lengths")
    return (*(b for b in values if b < longest), longest)


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``length`` (the last bucket when none does)."""
    return next((b for b in buckets if b >= length), buckets[-1])


def group_size(working_set: int, per_unit: int, units: int, fixed: int) -> int:
    """Units (cells, 100 ms segments) an analyzer works on together.

    Eager, the group is sized by the batch at hand: as many units as keep one intermediate
    near ``working_set`` elements, so a small batch runs few large operations and a large one
    stays near the cache. Traced or exported, the loop over the groups is baked into a graph
    that must serve any batch size, so the configured ``fixed`` plan is kept instead.

    Args:
        working_set: Elements one intermediate should hold (0: always ``fixed``).
        per_unit: Elements of one unit across the batch (rows x its length).
        units: Units in all.
        fixed: The configured group (0: every unit at once).
    """
    if working_set > 0 and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        return min(units, max(1, working_set // max(per_unit, 1)))
    return fixed or units


def in_row_groups(
    fn: Callable[..., tuple[Tensor, ...]],
    inputs: tuple[Tensor, ...],
    working_set: int,
    per_row: int,
) -> tuple[Tensor, ...]:
    """``fn(*inputs)``, the batch cut into groups of rows when eager.

    An analyzer has no weights to share across a batch, so a large batch gains nothing from
    running at once and loses the cache: eager, its rows go through ``fn`` in groups of as many
    rows as keep one intermediate near ``working_set`` elements (at least one), and the outputs
    are joined. Traced or exported, the whole batch runs at once (:func:`group_size`). Rows are
    independent, so the outputs are the same bit for bit.

    Args:
        fn: Maps ``inputs`` (batch first) to outputs (batch first).
        inputs: Tensors whose first dimension is the batch.
        working_set: Elements one intermediate should hold (0: the whole batch at once).
        per_row: Elements of that intermediate for one row.
    """
    rows = int(inputs[0].shape[0])
    size = group_size(working_set, per_row, rows, rows)
    if size >= rows:
        return fn(*inputs)
    parts = [fn(*(x[i : i + size] for x in inputs)) for i in range(0, rows, size)]
    return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))


class InputError(ValueError):
    """A field of an ad that cannot be used, with the field named.

    Args:
        field: The ad field at fault, e.g. ``"image"`` or ``"text"``.
        problem: What is wrong, in words a caller can act on.
        status: The HTTP status a server should answer with (4xx).
    """

    def __init__(self, field: str, problem: str, status: int = 400) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


class Preparer(Protocol):
    """Turns one decoded media item into the encoder's input tensors (no batch dimension).

    A preparer whose items vary in length also has ``buckets``: input name -> the lengths
    its first dimension is padded to in a batch (see :class:`InputSpec`); padding is zeros.
    Items whose other dimensions vary (an audio clip's channels) are zero-padded to the
    batch's widest. A preparer whose encoder measures an item otherwise than it was sent also
    has ``warnings(media) -> tuple[str, ...]``, each naming the field, added to the ad's.
    """

    def prepare(self, media: Any) -> dict[str, Tensor]:
        """Prepare one present item. ``media`` is the modality's decoded form."""
        ...

    def placeholder(self) -> dict[str, Tensor]:
        """The tensors standing in for an absent modality (masked out by the ensemble)."""
        ...


def size_mismatch(err: RuntimeError) -> str:
    """The first "size mismatch for NAME: ..." line of a ``load_state_dict`` error, or ""."""
    return next((x.strip() for x in str(err).splitlines() if "size mismatch" in x), "")


def resolve_model_dir(model_dir: str) -> Path:
    """Path of a model directory; ``package:NAME`` asks the installed package NAME."""
    if model_dir.startswith("package:"):
        import importlib

        module: Any = importlib.import_module(model_dir.removeprefix("package:"))
        return Path(module.get_model_path())
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model (config.json) in {path}")
    return path


class PolicyHead(nn.Module):
    """Base of every head: maps one encoder's output to logits for the policies it scores
    (learned heads in :mod:`ensemble.heads`, analyzers' rule heads in :mod:`encoders.rules`).

    Attributes:
        policy_index: Column of each output logit in the ensemble's policy list.
    """

    policy_index: tuple[int, ...]


class Encoder(nn.Module):
    """Base class of every encoder and analyzer.

    Subclasses set ``modality``, ``kind``, ``output_dim`` and ``input_spec``, implement
    ``forward(*inputs) -> [batch, output_dim]`` with the inputs in ``input_spec`` order and
    ``preparer(settings)``, and register with :func:`encoders.registry.register_encoder`.
    Analyzers also set ``rule``, their rule head (:mod:`encoders.rules`).
    Analyzers also set ``measurement_names`` (``len == output_dim``). ``head_trained`` names
    the submodules trained with the heads even when the encoder is frozen (cached); they are
    saved with the heads. ``head_trained_settings`` names the settings that shape only them
    (left out of the embedding cache's key). ``tuned`` names the (dotted) submodules that
    fine-tuning changes while the rest stays as loaded: a "heads" checkpoint stores them too.
    """

    modality: ClassVar[Modality]
    kind: ClassVar[EncoderKind] = "learned"
    output_dim: int
    input_spec: tuple[InputSpec, ...]
    measurement_names: tuple[str, ...] = ()
    head_trained: tuple[str, ...] = ()
    head_trained_settings: tuple[str, ...] = ()
    tuned: tuple[str, ...] = ()
    # An analyzer's rule head class: ``rule(analyzer, policy columns, each policy's rule)``.
    rule: ClassVar[type[PolicyHead] | None] = None
    # Whether one traced graph runs at every length of the encoder's bucketed inputs; False
    # when ``forward`` sizes loops or scans from the length (tracing bakes it): a single graph
    # then pads them to the longest bucket (export.artifact.fixed_lengths).
    traced_lengths_free: ClassVar[bool] = True
    # Rows ``forward`` needs: a batch where no ad has the modality gives the encoder this
    # many placeholder rows, which no ad's index points to.
    min_rows: ClassVar[int] = 0
    # Whether a graph should run this encoder's rows a few at a time: it has no weights for a
    # batch to share, and a row's intermediates are megabytes, so a traced graph (which runs
    # the whole batch at once) loses the cache as batches grow (ensemble.scoring.Scorer's
    # ``analyzer_rows``; eager, ``in_row_groups`` groups the rows instead).
    rows_apart: ClassVar[bool] = False

    @classmethod
    def preparer(cls, settings: Any) -> Any:
        """The preparation of this encoder's inputs for ``settings`` (a :class:`Preparer`,
        or an :class:`encoders.media.VideoPreparer` for video)."""
        raise NotImplementedError(f"{cls.__name__} declares no preparer")

    @property
    def frozen_dim(self) -> int:
        """Width of :meth:`frozen_features` (``output_dim`` unless ``head_trained`` parts add
        to it)."""
        return self.output_dim

    def frozen_features(self, *inputs: Tensor) -> Tensor:
        """The part of ``forward`` that never trains with the heads: what training caches.

        Args: the inputs in ``input_spec`` order. Returns [batch, frozen_dim].
        """
        out: Tensor = self(*inputs)
        return out

    def with_head_trained(self, frozen: Tensor, *inputs: Tensor) -> Tensor:
        """``forward`` from :meth:`frozen_features`' output and the same inputs.

        Encoders with ``head_trained`` submodules (small parts learned with the heads while
        the backbone stays frozen, e.g. the text encoder's lexicon) add their output here.

        Args:
            frozen: [batch, frozen_dim].
            *inputs: The inputs in ``input_spec`` order.

        Returns:
            [batch, output_dim].
        """
        return frozen

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        """Random inputs matching ``input_spec`` (for tracing and tests)."""
        return tuple(random_input(spec, batch_size) for spec in self.input_spec)


def random_input(spec: InputSpec, batch_size: int) -> Tensor:
    """A random tensor of ``[batch_size, *spec.shape]`` in a range the spec's dtype allows."""
    shape = (batch_size, *spec.shape)
    if spec.dtype.is_floating_point:
        return torch.randn(shape, dtype=spec.dtype)
    return torch.randint(0, 100, shape, dtype=spec.dtype)
