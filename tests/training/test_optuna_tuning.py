"""The Optuna study: short trials, SQLite storage that resumes, best parameters recorded."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.training

pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")


def test_study_resumes_and_records_best_parameters(workspace_factory):
    from devolearn_web.training.tune import TuneSettings, tune

    workspace = workspace_factory("membrane")
    settings = TuneSettings(
        trials=1, data_fraction=0.5, trial_epochs=1, trial_images=4, validation_limit=2, bf16=False
    )
    best = tune(workspace, settings)
    assert workspace.optuna_db.exists()
    assert 0.5e-3 <= best["learning_rate"] <= 20e-3
    assert 8 <= best["batch_size"] <= 64
    assert best["metric"] == "val_iou" and best["trials"] == 1
    assert json.loads(workspace.best_params.read_text()) == best

    # A rerun asking for two trials adds one: the study lives in the SQLite storage.
    again = tune(workspace, TuneSettings(**{**settings.__dict__, "trials": 2}))
    assert again["trials"] == 2
    study = optuna.load_study(study_name="membrane", storage=f"sqlite:///{workspace.optuna_db}")
    assert len(study.trials) == 2


def test_trial_cost_is_capped_by_images_seen():
    from devolearn_web.training.tune import TuneSettings, _trial_steps

    settings = TuneSettings(trial_epochs=3, trial_images=256)
    assert _trial_steps(batches_per_epoch=100, batch_size=8, settings=settings) == 32
    assert _trial_steps(batches_per_epoch=100, batch_size=64, settings=settings) == 4
    assert _trial_steps(batches_per_epoch=2, batch_size=8, settings=settings) == 6
