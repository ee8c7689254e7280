"""The Optuna study: trials train real heads, the SQLite study resumes where it stopped."""

from __future__ import annotations

import optuna
import pytest

from ensemble.training.train import TrainSettings
from ensemble.training.tune import SEARCH_SPACE, apply_params, finished, open_study, tune
from tests.ensemble.training.train_data import keyword_ads, text_config


def test_study_resumes_and_counts_finished_trials(tiny_bert_dir, tmp_path) -> None:
    config = text_config(tiny_bert_dir)
    train_ads, val_ads = keyword_ads(64, seed=1), keyword_ads(32, seed=2, prefix="val")
    settings = TrainSettings(epochs=3, progress=False)
    storage = tmp_path / "study.db"
    options = {"storage": storage, "settings": settings, "cache_dir": tmp_path / "cache"}
    first = tune(config, train_ads, val_ads, trials=1, **options)
    assert finished(first) == 1
    trial0 = first.trials[0]
    # a new process: the study comes back from SQLite and runs only the missing trial
    resumed = tune(config, train_ads, val_ads, trials=2, **options)
    assert finished(resumed) == 2
    assert [t.number for t in resumed.trials] == [0, 1]
    assert resumed.trials[0].params == trial0.params
    assert resumed.trials[0].value == trial0.value
    assert resumed.trials[1].params != trial0.params  # a new point, not the first one again
    for trial in resumed.trials:
        assert trial.value is not None
        assert 0 < trial.value <= 1  # the validation mean PR-AUC of a trained model
        assert set(trial.params) == set(SEARCH_SPACE)
        assert set(trial.user_attrs["thresholds"]) == {"offensive_language", "hate_speech"}
    done = tune(config, train_ads, val_ads, trials=2, **options)
    assert len(done.trials) == 2  # nothing left to run


def test_a_failed_trial_does_not_count(tmp_path) -> None:
    study = open_study(tmp_path / "s.db", "heads")

    def broken(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt  # Ctrl-C in the middle of a trial

    with pytest.raises(KeyboardInterrupt):
        study.optimize(broken, n_trials=1)
    assert finished(open_study(tmp_path / "s.db", "heads")) == 0


def test_trial_parameters_reach_config_and_settings(tiny_bert_dir) -> None:
    params = {"head_hidden": 64, "head_dropout": 0.2, "lr": 0.01, "class_weight": "sqrt"}
    config, settings = apply_params(text_config(tiny_bert_dir), TrainSettings(), params)
    assert (config.head_hidden, config.head_dropout) == (64, 0.2)
    assert (settings.lr, settings.class_weight) == (0.01, "sqrt")
