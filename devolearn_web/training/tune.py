"""Optuna search over learning rate and batch size, short trials on 10% of the training data."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import optuna
import torch

from devolearn_web.training.dataset import build_dataset
from devolearn_web.training.hyperparameters import write_best_params
from devolearn_web.training.layout import Workspace
from devolearn_web.training.loop import (
    build_optimizer,
    epoch_batches,
    iterate_batches,
    resolve_device,
    selection_metric,
    train_step,
    validate,
)
from devolearn_web.training.losses import build_loss
from devolearn_web.training.models import build_model
from devolearn_web.training.specs import get_spec

log = logging.getLogger(__name__)

LEARNING_RATE_RANGE = (0.5e-3, 20e-3)
BATCH_SIZE_RANGE = (8, 64)


@dataclass(frozen=True)
class TuneSettings:
    """How many trials, and how much each may train."""

    # Every trial sees at most `trial_images` training images whatever its batch size (a large
    # batch takes fewer steps), so trials cost about the same and compare learning at equal
    # compute, which is what a time-budgeted `train` run then spends.

    trials: int = 20
    data_fraction: float = 0.1
    trial_epochs: int = 2
    trial_images: int = 192
    validation_limit: int = 48
    bf16: bool = True
    threads: int = 2
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda" or "auto"


def _trial_steps(batches_per_epoch: int, batch_size: int, settings: TuneSettings) -> int:
    """Optimiser steps of one trial: the epoch count, capped by the image budget."""
    cap = max(1, math.ceil(settings.trial_images / batch_size))
    return min(batches_per_epoch * settings.trial_epochs, cap)


def run_trial(
    workspace: Workspace, learning_rate: float, batch_size: int, settings: TuneSettings
) -> dict[str, float]:
    """Train a fresh network briefly on the tuning subset and return its validation metrics."""
    spec = get_spec(workspace.model)
    torch.manual_seed(settings.seed)
    train_set = build_dataset(
        workspace.model,
        workspace.index_csv,
        "train",
        augment=True,
        fraction=settings.data_fraction,
        seed=settings.seed,
    )
    validation_set = build_dataset(
        workspace.model, workspace.index_csv, "validation", limit=settings.validation_limit
    )
    network = build_model(workspace.model).to(resolve_device(settings.device))
    optimizer = build_optimizer(network, learning_rate)
    loss_fn = build_loss(spec.task)
    batches_per_epoch = len(epoch_batches(len(train_set), batch_size, settings.seed, 0))
    steps_left = _trial_steps(batches_per_epoch, batch_size, settings)
    for epoch in range(settings.trial_epochs):
        batches = epoch_batches(len(train_set), batch_size, settings.seed, epoch)[:steps_left]
        for images, targets in iterate_batches(train_set, batches):
            loss = train_step(network, optimizer, loss_fn, images, targets, settings.bf16)
            if not math.isfinite(loss):
                raise optuna.TrialPruned(f"diverged (loss {loss})")
        steps_left -= len(batches)
        if steps_left <= 0:
            break
    return validate(network, validation_set, loss_fn, spec.task, settings.bf16)


def tune(workspace: Workspace, settings: TuneSettings) -> dict:
    """Run (or resume) the study in runs/<model>/optuna.db; write and return best_params.json."""
    spec = get_spec(workspace.model)
    torch.set_num_threads(settings.threads)
    metric_name, direction = selection_metric(spec.task)
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=workspace.model,
        storage=f"sqlite:///{workspace.optuna_db.resolve()}",
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        learning_rate = trial.suggest_float("learning_rate", *LEARNING_RATE_RANGE, log=True)
        batch_size = trial.suggest_int("batch_size", *BATCH_SIZE_RANGE)
        started = time.monotonic()
        metrics = run_trial(workspace, learning_rate, batch_size, settings)
        trial.set_user_attr("seconds", round(time.monotonic() - started, 1))
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        return metrics[metric_name]

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    remaining = settings.trials - len(finished)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError("no tuning trial completed; see the log for why they failed")
    best = study.best_trial
    params = {
        "learning_rate": best.params["learning_rate"],
        "batch_size": best.params["batch_size"],
        "metric": f"val_{metric_name}",
        "direction": direction,
        "value": best.value,
        "trial": best.number,
        "trials": len(complete),
        "data_fraction": settings.data_fraction,
        "trial_epochs": settings.trial_epochs,
        "trial_images": settings.trial_images,
        "storage": workspace.optuna_db.as_posix(),
    }
    write_best_params(workspace.best_params, params)
    log.info("best %s %.4f with %s", metric_name, best.value, best.params)
    return params
