"""Bayesian hyper-parameter search of the heads with Optuna (TPE), resumable from SQLite.

Each trial builds the ensemble with the trial's head shape, trains it with :func:`train`
(frozen encoders' embeddings come from the cache after the first trial, so a trial takes
seconds) and reports the validation score training early-stops on (mean PR-AUC of the trained
policies). The study is stored in SQLite: running the same command again adds trials until
the study holds ``trials`` finished ones, so an interrupted search picks up where it stopped.
A trial left RUNNING by a killed process is failed after ``grace_period`` seconds without a
heartbeat and retried once.

Search space (:data:`SEARCH_SPACE`): learning rate, weight decay, class weighting, batch size,
hidden width of the heads (0: linear) and their dropout.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ensemble.builder import build_ensemble
from ensemble.config import ModelConfig
from ensemble.training.train import CLASS_WEIGHT_POWER, TrainResult, TrainSettings, train

log = logging.getLogger(__name__)

SEARCH_SPACE: dict[str, Any] = {
    "lr": ("log", 1e-4, 1e-2),
    "branch_lr": ("log", 1e-3, 1e-1),
    "weight_decay": ("log", 1e-6, 1e-2),
    "class_weight": ("choice", tuple(CLASS_WEIGHT_POWER)),
    "batch_size": ("choice", (64, 128, 256, 512)),
    "head_hidden": ("choice", (0, 128, 256, 512)),
    "head_dropout": ("float", 0.0, 0.5),
}
HEAD_PARAMS = ("head_hidden", "head_dropout")


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """One point of :data:`SEARCH_SPACE`."""
    params: dict[str, Any] = {}
    for name, (kind, *args) in SEARCH_SPACE.items():
        if kind == "log":
            params[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, args[0], args[1])
        else:
            params[name] = trial.suggest_categorical(name, list(args[0]))
    return params


def apply_params(
    config: ModelConfig, settings: TrainSettings, params: Mapping[str, Any]
) -> tuple[ModelConfig, TrainSettings]:
    """The config (head shape) and settings (the rest) of a set of parameters."""
    heads = {k: v for k, v in params.items() if k in HEAD_PARAMS}
    rest = {k: v for k, v in params.items() if k not in HEAD_PARAMS}
    return dataclasses.replace(config, **heads), dataclasses.replace(settings, **rest)


def open_study(
    storage: str | Path, name: str, *, seed: int = 0, grace_period: int = 120
) -> optuna.Study:
    """Create or load the study ``name`` in the SQLite file ``storage``."""
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = RDBStorage(
            f"sqlite:///{Path(storage).resolve()}",
            heartbeat_interval=max(1, grace_period // 2),
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    study = optuna.create_study(
        storage=rdb, study_name=name, direction="maximize", load_if_exists=True
    )
    # seeded by the trials already there, so a resumed search draws new points
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=5)
    return study


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def train_with(
    config: ModelConfig,
    settings: TrainSettings,
    params: Mapping[str, Any],
    train_ads: Sequence[Mapping[str, Any]],
    val_ads: Sequence[Mapping[str, Any]],
    **train_options: Any,
) -> TrainResult:
    """Build the ensemble ``params`` describe and train it."""
    config, settings = apply_params(config, settings, params)
    return train(
        build_ensemble(config, seed=settings.seed), train_ads, val_ads, settings, **train_options
    )


def tune(
    config: ModelConfig,
    train_ads: Sequence[Mapping[str, Any]],
    val_ads: Sequence[Mapping[str, Any]],
    *,
    storage: str | Path,
    trials: int,
    study_name: str = "heads",
    settings: TrainSettings | None = None,
    seed: int = 0,
    **train_options: Any,
) -> optuna.Study:
    """Run trials until the study holds ``trials`` finished ones.

    Args:
        config: The model config; each trial overrides its head shape.
        train_ads: Labelled training ads.
        val_ads: Labelled validation ads (the objective).
        storage: SQLite file of the study (created).
        trials: Finished trials wanted in total (earlier runs count).
        study_name: Name of the study inside the file.
        settings: Fixed settings; each trial overrides the searched ones.
        seed: Seed of the TPE sampler.
        **train_options: ``cache_dir``, ``base_dir`` for :func:`train`.

    Returns:
        The study.
    """
    settings = dataclasses.replace(settings or TrainSettings(), progress=False)
    study = open_study(storage, study_name, seed=seed)
    remaining = trials - finished(study)
    if remaining <= 0:
        log.info("study %r already holds %d finished trials", study_name, finished(study))
        return study

    def objective(trial: optuna.Trial) -> float:
        result = train_with(config, settings, suggest(trial), train_ads, val_ads, **train_options)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("thresholds", {k: v["threshold"] for k, v in result.policies.items()})
        return result.val_score

    log.info("study %r: %d finished, running %d more", study_name, finished(study), remaining)
    study.optimize(objective, n_trials=remaining, show_progress_bar=True)
    return study
