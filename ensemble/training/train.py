"""Training of the learned heads (and optionally encoders) on labelled manifests.

- Encoders are frozen by default: their embeddings are computed once and cached
  (:mod:`ensemble.training.features`), so an epoch over tens of thousands of ads takes a second.
  ``unfreeze`` fine-tunes the named encoders on their prepared inputs (the same preparation
  as scoring), the other encoders staying cached.
- Loss: multi-label BCE on the fused policy logits (:class:`~ensemble.training.trainable.FusedLogits`,
  the logits of the scores the ensemble serves), each (ad, policy) term masked out where the
  label is unknown or no present modality scores the policy, averaged over the known terms.
  Class weighting: positives of each policy are weighted by (negatives / positives) ** power,
  power 0 (``none``), 0.5 (``sqrt``) or 1 (``balanced``), counted on the training labels.
- Batches: with fine-tuned encoders on one process, each epoch's shuffled order is cut into
  pools of ``BUCKET_BATCHES`` batches, each pool sorted by token count and cut into batches,
  and the batches shuffled: a batch pads to near its own length, several times faster on a
  CPU than random batches, with the same ads per epoch.
- Low-rank updates (``update_rank``, after LoRA: Hu et al. 2021): each fine-tuned matrix
  stays frozen and learns a change ``a @ b`` of rank ``update_rank`` (``a`` starts at zero,
  so training starts from the model as given); the change is merged into the matrix at the
  end, so the result is an ordinary model whose matrices moved by rank-r steps, stored
  exactly by :func:`ensemble.pretrained.save_update` at the same rank.
- Early stopping on the validation score: the mean average precision (PR-AUC) over the trained
  policies; the best epoch's weights are kept.
- Thresholds: per trained policy, :func:`ensemble.training.evaluate.choose_threshold` (max F1) on the
  validation scores; the policy is then marked ``calibrated``. Other policies are kept as
  configured.
- Distributed: under ``torchrun`` (:func:`init_distributed`), DistributedDataParallel over gloo
  (CPU) or nccl (GPU). ``batch_size`` is global: each of W processes takes batch_size / W ads
  of the same shuffled order, and the loss is normalised by the known terms of the GLOBAL
  batch, so W processes take the same steps as one (up to floating-point summation order).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from torch.utils.data import DistributedSampler, TensorDataset
from tqdm import tqdm

from ensemble.batch import AdPreparer, PreparedAd
from ensemble.config import ModelConfig
from ensemble.model import AdPolicyEnsemble
from ensemble.reader import records_of
from ensemble.training.data import label_tensors
from ensemble.training.evaluate import choose_threshold
from ensemble.training.features import embed
from ensemble.training.trainable import FusedLogits

log = logging.getLogger(__name__)
CLASS_WEIGHT_POWER = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}
SCHEDULES = ("constant", "linear")
BUCKET_BATCHES = 50


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters and run options of :func:`train`.

    Attributes:
        epochs: Most epochs.
        batch_size: Ads per optimizer step, over all processes.
        lr: AdamW learning rate of the heads.
        encoder_lr: AdamW learning rate of fine-tuned encoders.
        branch_lr: AdamW learning rate of the frozen encoders' ``head_trained`` parts (the
            text lexicon); they get no weight decay.
        weight_decay: AdamW weight decay.
        patience: Epochs without a better validation score before stopping.
        class_weight: ``"none"``, ``"sqrt"`` or ``"balanced"`` (see the module docstring).
        seed: Seed of the shuffling and dropout.
        unfreeze: Keys of the encoders to fine-tune.
        embed_batch_size: Ads per encoder call (embedding, fine-tuning validation).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        progress: Show progress bars (on the first process).
        time_limit_s: Stop taking optimizer steps after this many seconds of training (None:
            no limit): the epoch under way ends early, is validated like any other, and
            training stops. A partial epoch is a random subset (the order is shuffled).
        schedule: ``"constant"`` learning rates, or ``"linear"``: every group's rate falls
            linearly to zero over ``epochs`` epochs (the usual schedule for fine-tuning a
            transformer; early stopping may end the run before it reaches zero).
        update_rank: Train each tuned matrix of the ``unfreeze`` encoders (their ``tuned``
            parts) as a frozen matrix plus a rank-``update_rank`` change (module docstring);
            None: the matrices themselves.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    encoder_lr: float = 2e-5
    branch_lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    class_weight: str = "none"
    seed: int = 0
    unfreeze: tuple[str, ...] = ()
    embed_batch_size: int = 64
    device: str = "cpu"
    progress: bool = True
    time_limit_s: float | None = None
    schedule: str = "constant"
    update_rank: int | None = None

    def __post_init__(self) -> None:
        if self.class_weight not in CLASS_WEIGHT_POWER:
            raise ValueError(
                f"class_weight {self.class_weight!r}: one of {list(CLASS_WEIGHT_POWER)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: one of {list(SCHEDULES)}")
        if self.update_rank is not None and self.update_rank < 1:
            raise ValueError(f"update_rank {self.update_rank}: at least 1")


class LowRankChange(nn.Module):
    """A parametrization: the frozen ``weight`` plus ``a @ b``, a change of rank ``rank``."""

    def __init__(self, weight: Tensor, rank: int) -> None:
        super().__init__()
        out_dim, in_dim = weight.shape
        self.a = nn.Parameter(weight.new_zeros(out_dim, rank))
        self.b = nn.Parameter(torch.randn(rank, in_dim, dtype=weight.dtype) / math.sqrt(in_dim))

    def forward(self, weight: Tensor) -> Tensor:
        return weight + self.a @ self.b


def _low_rank(live: nn.ModuleDict, rank: int) -> list[nn.Linear]:
    """Give every linear layer of the live encoders' tuned parts a :class:`LowRankChange`."""
    linears = []
    for key, module in live.items():
        tuned = tuple(f"{part}." for part in getattr(module, "tuned", ()))
        if not tuned:
            raise ValueError(f"update_rank: encoder {key!r} has no tuned parts (tuned_layers)")
        linears += [
            m for name, m in module.named_modules()
            if isinstance(m, nn.Linear) and f"{name}.".startswith(tuned)
        ]  # fmt: skip
    for linear in linears:
        parametrize.register_parametrization(linear, "weight", LowRankChange(linear.weight, rank))
        original: Tensor = linear.parametrizations["weight"].original  # type: ignore[index,union-attr]
        original.requires_grad_(False)
    return linears


def _merge(linears: Sequence[nn.Linear]) -> None:
    """Fold each :class:`LowRankChange` into its matrix, trainable again."""
    for linear in linears:
        parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        linear.weight.requires_grad_(True)


@dataclass
class TrainResult:
    """What :func:`train` returns; ``model`` carries the new thresholds in its config.

    Attributes:
        model: The trained ensemble (eval mode), config updated.
        val_score: Best validation score (mean average precision of the trained policies).
        best_epoch: The epoch (from 1) whose weights were kept.
        history: Per epoch: train loss, validation loss and score.
        policies: Trained policy -> its validation metrics at the chosen threshold.
        world_size: Number of processes.
        max_rank_difference: Largest absolute difference of a trained weight between the
            processes at the end (0.0 when they agree exactly; 0.0 for one process).
        seconds: Wall time, embedding included.
    """

    model: AdPolicyEnsemble
    val_score: float
    best_epoch: int
    history: list[dict[str, float]]
    policies: dict[str, dict[str, float]]
    world_size: int = 1
    max_rank_difference: float = 0.0
    seconds: float = 0.0
    settings: TrainSettings = field(default_factory=TrainSettings)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record for the checkpoint."""
        return {
            "settings": dataclasses.asdict(self.settings),
            "head_hidden": self.model.config.head_hidden if self.model.config else None,
            "head_dropout": self.model.config.head_dropout if self.model.config else None,
            "val_score": self.val_score,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "policies": self.policies,
            "world_size": self.world_size,
            "max_rank_difference": self.max_rank_difference,
            "seconds": round(self.seconds, 1),
        }


def init_distributed(device: str) -> str:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1); return this rank's device.

    gloo on CPU, nccl on CUDA; each process takes the GPU of its LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def class_weights(targets: Tensor, mask: Tensor, scheme: str) -> Tensor:
    """Positive weight per policy: (negatives / positives) ** power, 1 without both classes.

    Args:
        targets: [N, P] labels in [0, 1] (soft labels count fractionally).
        mask: [N, P] 1 where known.
        scheme: ``"none"``, ``"sqrt"`` or ``"balanced"``.

    Returns:
        [P] float32.
    """
    positives = (targets * mask).sum(0)
    negatives = ((1 - targets) * mask).sum(0)
    ratio = torch.where(
        (positives > 0) & (negatives > 0), negatives / positives.clamp(min=1e-9), 1.0
    )
    return ratio ** CLASS_WEIGHT_POWER[scheme]


def masked_bce(
    logits: Tensor, targets: Tensor, mask: Tensor, pos_weight: Tensor, world_size: int = 1
) -> Tensor:
    """BCE with logits over the known terms, averaged over the known terms of the global batch.

    Args:
        logits: [B, P]; targets: [B, P] in [0, 1]; mask: [B, P] 0/1; pos_weight: [P].
        world_size: Processes whose gradients DDP averages: the local sum is divided by the
            global count of known terms and multiplied by ``world_size``, so the averaged
            gradient is the gradient of the global mean.

    Returns:
        Scalar loss.
    """
    terms = F.binary_cross_entropy_with_logits(
        logits, targets, pos_weight=pos_weight, reduction="none"
    )
    count = mask.sum()
    if world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return (terms * mask).sum() * world_size / count.clamp(min=1.0)


@dataclass
class _Split:
    """A data split ready for batching: cached embeddings and/or prepared ads, labels."""

    cached: dict[str, Tensor]
    prepared: list[PreparedAd]
    presence: Tensor
    targets: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def token_counts(self) -> Tensor:
        """[N] int64: each ad's prepared tokens over all its token inputs (0 without any)."""
        counts = torch.zeros(len(self), dtype=torch.int64)
        for i, ad in enumerate(self.prepared):
            for name, tensor in ad.tensors.items():
                if name.endswith(".attention_mask"):
                    counts[i] += int(tensor.sum())
        return counts

    def batch(
        self, index: Tensor, view: FusedLogits, preparer: AdPreparer | None, device: torch.device
    ) -> tuple[dict[str, list[Tensor]], Tensor]:
        """Inputs of :class:`FusedLogits` for rows ``index``, and presence [B, 4]."""
        inputs = {k: [v[index].to(device)] for k, v in self.cached.items()}
        if preparer is not None:
            collated = preparer.collate([self.prepared[i] for i in index.tolist()], dense=True)
            named = dict(zip(preparer.input_names, collated.inputs, strict=True))
            for key, encoder in view.prepared_encoders.items():
                prepared = [named[f"{key}.{s.name}"].to(device) for s in encoder.input_spec]
                inputs[key] = inputs.get(key, []) + prepared
        return inputs, self.presence[index].to(device)


def _split(
    model: AdPolicyEnsemble,
    view: FusedLogits,
    ads: Sequence[Mapping[str, Any]],
    settings: TrainSettings,
    cache_dir: str | Path | None,
    base_dir: str | Path | None,
    preparer: AdPreparer | None,
) -> _Split:
    """Embed (frozen encoders) and prepare (with ``preparer``: the encoders run live, the
    head-trained parts) a split; rank 0 fills the cache."""
    world, rank = _world()
    cached = [k for k in view.keys if k not in view.live]
    features = None
    if cached:
        for turn in (0, 1):  # rank 0 first, so the others read its cache
            if world > 1 and cache_dir is not None:
                dist.barrier()
            if (rank == 0) == (turn == 0):
                features = embed(
                    model, ads, keys=cached, cache_dir=cache_dir, base_dir=base_dir,
                    batch_size=settings.embed_batch_size, device=settings.device,
                    progress=settings.progress and rank == 0,
                )  # fmt: skip
    presence = torch.zeros(len(ads), 4) if features is None else features.presence
    prepared: list[PreparedAd] = []
    if preparer is not None:
        root = Path(base_dir) if base_dir is not None else None
        chunks = preparer.stream(records_of(ads), base_dir=root, on_error="raise")
        prepared = [p for chunk in chunks for p in chunk if isinstance(p, PreparedAd)]
        live = torch.tensor([p.presence for p in prepared], dtype=torch.float32)
        presence = torch.maximum(presence, live)
    targets, mask = label_tensors(ads, model.config.policy_names)
    embeddings = {} if features is None else {k: features.embeddings[k] for k in cached}
    return _Split(embeddings, prepared, presence, targets, mask)


@torch.no_grad()
def _predict(
    view: FusedLogits,
    split: _Split,
    preparer: AdPreparer | None,
    batch_size: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Fused logits [N, P] and applicable [N, P] of a whole split, in eval mode (prepared
    ads batched by token count: less padding, the same numbers)."""
    view.eval()
    order = (
        torch.argsort(split.token_counts(), stable=True) if preparer else torch.arange(len(split))
    )
    logits, applicable = [], []
    for index in order.split(batch_size):
        out, ok = view(*split.batch(index, view, preparer, device))
        logits.append(out.float().cpu())
        applicable.append(ok.cpu())
    back = torch.argsort(order)
    return torch.cat(logits)[back], torch.cat(applicable)[back]


def _validation_score(probs: Tensor, split: _Split, known: Tensor, trained: Sequence[int]) -> float:
    """Mean average precision over the trained policies with both classes in validation."""
    labels = split.targets >= 0.5
    scores = []
    for j in trained:
        rows = known[:, j]
        y = labels[rows, j].numpy()
        if 0 < y.sum() < len(y):
            scores.append(average_precision_score(y, probs[rows, j].numpy()))
    if not scores:
        raise ValueError("validation needs a positive and a negative label of a trained policy")
    return float(np.mean(scores))


def _global_mean(value: float, world: int, device: torch.device) -> float:
    """The mean over processes of a per-process number (itself for one process)."""
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / world


def _max_rank_difference(view: FusedLogits, world: int) -> float:
    flat = torch.cat([p.detach().float().reshape(-1) for p in view.parameters()])
    if world == 1:
        return 0.0
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


@dataclass
class _Run:
    """What one training run's epochs and validations share."""

    view: FusedLogits
    net: torch.nn.Module  # the view, or its DistributedDataParallel wrapper
    train_split: _Split
    val_split: _Split
    preparer: AdPreparer | None
    trainable: Tensor  # [P] bool
    pos_weight: Tensor  # [P]
    settings: TrainSettings
    device: torch.device
    world: int

    def epoch(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        batches: Sequence[Tensor],
        deadline: float,
    ) -> float:
        """One pass over this process's ``batches`` of row indices, or those taken before
        ``deadline`` (``time.perf_counter()``), the schedule stepped after each; the global
        mean loss."""
        self.view.train()
        losses: list[float] = []
        trainable = self.trainable.to(self.device)
        live = bool(self.view.live) and self.settings.progress
        for index in tqdm(batches, desc="batches", leave=False, disable=not live, mininterval=30):
            if self.world == 1 and time.perf_counter() > deadline and losses:
                log.info(
                    "time limit: epoch stopped after %d of %d batches", len(losses), len(batches)
                )
                break
            inputs, presence = self.train_split.batch(index, self.view, self.preparer, self.device)
            logits, applicable = self.net(inputs, presence)
            mask = self.train_split.mask[index].to(self.device) * applicable * trainable
            targets = self.train_split.targets[index].to(self.device)
            loss = masked_bce(logits, targets, mask, self.pos_weight, self.world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return _global_mean(float(np.mean(losses)), self.world, self.device)

    def validate(self) -> tuple[Tensor, Tensor, float, float]:
        """Validation probabilities [N, P], applicable [N, P], loss (unweighted) and score."""
        batch = self.settings.embed_batch_size * 16
        logits, applicable = _predict(self.view, self.val_split, self.preparer, batch, self.device)
        known = self.val_split.mask.bool() & applicable & self.trainable
        ones = torch.ones(logits.shape[1])
        loss = float(masked_bce(logits, self.val_split.targets, known.float(), ones))
        trained = torch.nonzero(self.trainable).flatten().tolist()
        probs = torch.sigmoid(logits)
        return probs, applicable, loss, _validation_score(probs, self.val_split, known, trained)


def length_batches(
    indices: Tensor, lengths: Tensor, batch_size: int, generator: torch.Generator
) -> list[Tensor]:
    """Batches of ``indices`` (a shuffled order) grouped by length (module docstring).

    Args:
        indices: [N] row indices in shuffled order.
        lengths: [rows] token count per row.
        batch_size: Rows per batch.
        generator: Shuffles the batches.
    """
    batches = []
    for pool in indices.split(batch_size * BUCKET_BATCHES):
        ordered = pool[torch.argsort(lengths[pool], stable=True)]
        batches += list(ordered.split(batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    model: AdPolicyEnsemble,
    train_ads: Sequence[Mapping[str, Any]],
    val_ads: Sequence[Mapping[str, Any]],
    settings: TrainSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``model``'s learned heads (and ``settings.unfreeze`` encoders) in place.

    Args:
        model: An ensemble from :func:`~ensemble.builder.build_ensemble` or ``from_pretrained``.
        train_ads: Labelled ads to learn from.
        val_ads: Labelled ads for early stopping and thresholds.
        settings: Hyper-parameters (defaults: :class:`TrainSettings`).
        cache_dir: Embedding cache directory (None: embeddings are not stored).
        base_dir: Directory media paths are relative to.

    Returns:
        A :class:`TrainResult`; ``result.model`` is ``model``, its config updated.
    """
    settings = settings or TrainSettings()
    start = time.perf_counter()
    world, rank = _world()
    if settings.batch_size % world:
        raise ValueError(f"batch size {settings.batch_size} is not divisible by {world} processes")
    device = torch.device(settings.device)
    model.to(device)
    view = FusedLogits(model, settings.unfreeze).to(device)
    keys = view.prepared_encoders
    preparer = AdPreparer(model.config, keys=keys) if keys else None
    train_split = _split(model, view, train_ads, settings, cache_dir, base_dir, preparer)
    val_split = _split(model, view, val_ads, settings, cache_dir, base_dir, preparer)
    trainable = view.policy_columns.cpu() & (train_split.mask.sum(0) > 0)
    if not trainable.any():
        raise ValueError("no training label names a policy that a learned head scores")
    _warn_one_sided(model.config.policy_names, train_split, trainable)
    weights = class_weights(train_split.targets, train_split.mask, settings.class_weight)
    torch.manual_seed(settings.seed + rank)  # dropout; DDP broadcasts rank 0's weights
    changed = [] if settings.update_rank is None else _low_rank(view.live, settings.update_rank)
    net: torch.nn.Module = view
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(view, device_ids=ids)
    run = _Run(view, net, train_split, val_split, preparer, trainable, weights.to(device),
               settings, device, world)  # fmt: skip
    groups = [{"params": [*view.heads.parameters(), *view.fusion.parameters()], "lr": settings.lr}]
    if view.live:
        live = [p for p in view.live.parameters() if p.requires_grad]
        groups.append({"params": live, "lr": settings.encoder_lr})
    if view.partial:
        branches = list(view.branches.parameters())
        groups.append({"params": branches, "lr": settings.branch_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    sampler: DistributedSampler[int] = DistributedSampler(
        TensorDataset(torch.arange(len(train_split))),
        num_replicas=world, rank=rank, shuffle=True, seed=settings.seed,
    )  # fmt: skip
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(view.state_dict())
    history: list[dict[str, float]] = []
    bar = tqdm(
        range(1, settings.epochs + 1), desc="training", disable=not settings.progress or rank
    )
    lengths = train_split.token_counts() if view.live and world == 1 else None
    local = settings.batch_size // world
    steps = settings.epochs * math.ceil(len(sampler) / local)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 1.0 if settings.schedule == "constant" else max(0.0, 1 - step / steps),
    )
    limit = settings.time_limit_s if world == 1 else None  # ranks must take the same steps
    deadline = math.inf if limit is None else time.perf_counter() + limit
    # heads over cached embeddings are too small to parallelise: threads only cost time
    with _threads(1 if not view.live and device.type == "cpu" else torch.get_num_threads()):
        for epoch in bar:
            sampler.set_epoch(epoch)
            indices = torch.tensor(list(sampler))
            if lengths is None:
                batches = list(indices.split(local))
            else:
                shuffle = torch.Generator().manual_seed(settings.seed * 1000 + epoch)
                batches = length_batches(indices, lengths, local, shuffle)
            train_loss = run.epoch(optimizer, scheduler, batches, deadline)
            val_probs, val_applicable, val_loss, score = run.validate()
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                            "val_score": score})  # fmt: skip
            bar.set_postfix(loss=f"{train_loss:.4f}", val_ap=f"{score:.4f}")
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, copy.deepcopy(view.state_dict())
                probs, applicable = val_probs, val_applicable  # the kept weights' scores
            elif epoch - best_epoch >= settings.patience:
                break
            if time.perf_counter() > deadline:
                break
        view.load_state_dict(best_state)
    _merge(changed)
    difference = _max_rank_difference(view, world)
    model.config, policies = _with_thresholds(model.config, probs, val_split, applicable, trainable)
    log.info(
        "best epoch %d of %d, validation mean PR-AUC %.4f", best_epoch, len(history), best_score
    )
    return TrainResult(
        model.eval(), best_score, best_epoch, history, policies, world, difference,
        time.perf_counter() - start, settings,
    )  # fmt: skip


def _warn_one_sided(names: list[str], split: _Split, trainable: Tensor) -> None:
    """Warn of a policy whose training labels are all of one class: its head can only learn
    to give every ad that class, however its validation threshold is then set."""
    for j in torch.nonzero(trainable).flatten().tolist():
        labels = split.targets[split.mask[:, j].bool(), j] >= 0.5
        positives, total = int(labels.sum()), len(labels)
        if positives in (0, total):
            side = "positive" if positives == 0 else "negative"
            log.warning("%s: no %s among its %d training labels", names[j], side, total)


def _with_thresholds(
    config: ModelConfig, probs: Tensor, split: _Split, applicable: Tensor, trainable: Tensor
) -> tuple[ModelConfig, dict[str, dict[str, float]]]:
    """The config with each trained policy's validation threshold, marked calibrated; a
    calibration or band fitted to earlier weights (a run started from a checkpoint) is dropped:
    ``adpolicy calibrate`` fits them to these."""
    policies = list(config.policies)
    report = {}
    known = split.mask.bool() & applicable
    for j in torch.nonzero(trainable).flatten().tolist():
        rows = known[:, j]
        labels = (split.targets[rows, j] >= 0.5).long().numpy()
        name = policies[j].name
        if labels.min(initial=1) == labels.max(initial=0):
            log.warning("%s: validation lacks positives or negatives; threshold kept", name)
            continue
        threshold, f1 = choose_threshold(probs[rows, j].numpy(), labels)
        policies[j] = dataclasses.replace(
            policies[j], threshold=threshold, calibrated=True, calibration=None, band=None
        )
        ap = average_precision_score(labels, probs[rows, j].numpy())
        report[name] = {
            "threshold": threshold,
            "val_f1": f1,
            "val_pr_auc": float(ap),
            "val_n": int(rows.sum()),
        }
    return config.with_policies(tuple(policies)), report
