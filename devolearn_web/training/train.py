"""Time-budgeted training with resumable checkpoints, history, best model and plot."""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from devolearn_web.file_digest import file_sha256
from devolearn_web.training.augment import ASPECT_RANGE, ZOOM_RANGE
from devolearn_web.training.checkpoints import load_checkpoint, save_checkpoint
from devolearn_web.training.dataset import build_dataset
from devolearn_web.training.hyperparameters import Hyperparameters, resolve_hyperparameters
from devolearn_web.training.layout import Workspace
from devolearn_web.training.loop import (
    build_optimizer,
    epoch_batches,
    is_better,
    iterate_batches,
    resolve_device,
    selection_metric,
    train_step,
    validate,
)
from devolearn_web.training.losses import build_loss
from devolearn_web.training.models import build_network
from devolearn_web.training.plots import plot_history
from devolearn_web.training.specs import get_spec

log = logging.getLogger(__name__)

# The learning rate ends at this fraction of its start: small steps at the end settle the
# weights, which matters most for the lineage regression's validation error.
FINAL_LEARNING_RATE_FRACTION = 0.05


def cosine_learning_rate_factor(progress: float) -> float:
    """Multiplier of the base learning rate at `progress` (0..1) through the time budget."""
    progress = min(1.0, max(0.0, progress))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return FINAL_LEARNING_RATE_FRACTION + (1.0 - FINAL_LEARNING_RATE_FRACTION) * cosine


@dataclass(frozen=True)
class TrainSettings:
    """How long and how to train; None for learning rate / batch size means "tuned or default"."""

    minutes: float = 60.0
    max_epochs: int = 100
    max_steps: int | None = None  # total optimiser steps, across resumes (tests, smoke runs)
    learning_rate: float | None = None
    batch_size: int | None = None
    bf16: bool = True
    threads: int = 2
    checkpoint_minutes: float = 5.0
    validation_limit: int | None = None  # validate on a fixed subset to save time
    augment: bool = True
    seed: int = 0
    workers: int = 0
    fresh: bool = False  # ignore and replace an existing checkpoint
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    init_from: Path | None = None  # a new run starts from this ONNX file's weights
    gap_weight: float = 0.0  # extra cross-entropy weight on the gaps between touching objects
    small_object_weight: float = 0.0  # extra cross-entropy weight on and around small objects
    network: str | None = None  # a models.REFERENCE_NETWORKS name instead of the model's own
    # Segmentation: objects zoomed from 1/zoom_range to zoom_range, rows stretched up to
    # aspect_range against columns (augment.py).
    zoom_range: float = ZOOM_RANGE
    aspect_range: float = ASPECT_RANGE
    freeze_batch_norm: bool = False  # keep the starting network's BatchNorm statistics
    resolution_augmentation: bool = False  # lineage: views softened as other pixel sizes make
    object_dimming: bool = True  # segmentation: dim each object in augmentation (augment.py)
    projection_repeats: int = 1  # nucleus: each whole-embryo projection seen this often an epoch
    tight_crops: float = 0.0  # segmentation: share of views cropped onto a dark canvas


@dataclass
class RunState:
    """Everything needed to resume: position in the schedule, time spent, history, best."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    elapsed_seconds: float = 0.0
    loss_sum: float = 0.0  # training loss since the last validation, for the history row
    loss_count: int = 0
    best_value: float | None = None
    best_epoch: float | None = None
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    """What a call to `train` achieved."""

    epochs: float
    steps: int
    minutes: float
    best_metric: str
    best_value: float | None
    stopped_by: str  # "budget", "max_steps", "max_epochs" or "already_done"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _hyperparameter_record(
    hyper: Hyperparameters, settings: TrainSettings, device: torch.device
) -> dict:
    return {
        "learning_rate": hyper.learning_rate,
        "batch_size": hyper.batch_size,
        "source": hyper.source,
        "bf16": settings.bf16,
        "augment": settings.augment,
        "seed": settings.seed,
        "gap_weight": settings.gap_weight,
        "small_object_weight": settings.small_object_weight,
        "zoom_range": settings.zoom_range,
        "aspect_range": settings.aspect_range,
        "freeze_batch_norm": settings.freeze_batch_norm,
        "resolution_augmentation": settings.resolution_augmentation,
        "object_dimming": settings.object_dimming,
        "projection_repeats": settings.projection_repeats,
        "tight_crops": settings.tight_crops,
        "trained_on": describe_device(device),
        **({"network": settings.network} if settings.network else {}),
    }


def describe_device(device: torch.device) -> str:
    """What trained the network, for its card: the GPU's name, or "CPU"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def _check_same_run(saved: dict, current: dict, checkpoint: Path) -> None:
    keys = (
        "learning_rate",
        "batch_size",
        "bf16",
        "augment",
        "seed",
        "gap_weight",
        "small_object_weight",
        "network",
        "zoom_range",
        "aspect_range",
        "freeze_batch_norm",
        "resolution_augmentation",
        "object_dimming",
        "projection_repeats",
        "tight_crops",
    )
    # Checkpoints from before these weights trained without them.
    saved = {
        "gap_weight": 0.0,
        "small_object_weight": 0.0,
        "zoom_range": ZOOM_RANGE,
        "aspect_range": ASPECT_RANGE,
        "freeze_batch_norm": False,
        "resolution_augmentation": False,
        "object_dimming": True,
        "projection_repeats": 1,
        "tight_crops": 0.0,
        **saved,
    }
    changed = [
        f"{k} {saved.get(k)} -> {current.get(k)}" for k in keys if saved.get(k) != current.get(k)
    ]
    if changed:
        raise ValueError(
            f"{checkpoint} was trained with other settings ({'; '.join(changed)}); "
            "rerun with the same settings to resume, or pass --fresh to start over"
        )


def write_history_csv(history: list[dict], path: Path) -> None:
    """One row per validation: epoch (fractional when a budget ended mid-epoch) and metrics."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


class TrainingRun:
    """One model's training, resumed from its checkpoint when there is one."""

    def __init__(self, workspace: Workspace, settings: TrainSettings):
        self.workspace = workspace
        self.settings = settings
        self.spec = get_spec(workspace.model)
        torch.set_num_threads(settings.threads)
        _seed_everything(settings.seed)
        self.hyper = resolve_hyperparameters(
            settings.learning_rate, settings.batch_size, workspace.best_params
        )
        device = resolve_device(settings.device)
        self.record = _hyperparameter_record(self.hyper, settings, device)
        self.metric_name, self.direction = selection_metric(self.spec.task)
        self.network = build_network(workspace.model, settings.network).to(device)
        self.optimizer = build_optimizer(self.network, self.hyper.learning_rate)
        self.state = RunState()
        if workspace.checkpoint.exists() and not settings.fresh:
            self._resume()
        self.train_set = build_dataset(
            workspace.model,
            workspace.index_csv,
            "train",
            augment=settings.augment,
            seed=settings.seed,
            # A resumed run draws fresh augmentations instead of replaying the first ones.
            augment_seed=settings.seed + self.state.step,
            gap_weight=settings.gap_weight,
            small_object_weight=settings.small_object_weight,
            zoom_range=settings.zoom_range,
            aspect_range=settings.aspect_range,
            resolution_augmentation=settings.resolution_augmentation,
            object_dimming=settings.object_dimming,
            projection_repeats=settings.projection_repeats,
            tight_crops=settings.tight_crops,
        )
        self.validation_set = build_dataset(
            workspace.model, workspace.index_csv, "validation", limit=settings.validation_limit
        )
        if settings.init_from is not None and self.state.step == 0:
            self._start_from_onnx(settings.init_from)
        self.loss_fn = build_loss(self.spec.task)
        self._started = time.monotonic()
        self._elapsed_before = self.state.elapsed_seconds

    def _resume(self) -> None:
        saved = load_checkpoint(self.workspace.checkpoint)
        _check_same_run(saved["hyperparameters"], self.record, self.workspace.checkpoint)
        if "init_from" in saved["hyperparameters"]:
            # Fixed when the run began, whatever file the path names by now.
            self.record["init_from"] = saved["hyperparameters"]["init_from"]
        self.network.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = RunState(**saved["state"])
        log.info("resuming %s at step %d", self.workspace.model, self.state.step)

    def _start_from_onnx(self, path: Path) -> None:
        from devolearn_web.training.warm_start import load_onnx_weights, statistics_images

        images = statistics_images(self.workspace.model, self.workspace.index_csv)
        device = next(self.network.parameters()).device
        load_onnx_weights(self.network, path, images.to(device))
        # The file is usually the shipped model, which export then replaces: keep its digest.
        self.record["init_from"] = {"file": str(path), "sha256": file_sha256(path)}
        log.info("starting %s from the weights of %s", self.workspace.model, path)

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._started)

    def _stop_reason(self) -> str:
        """Why training must stop now, or "" to go on."""
        if self.settings.max_steps is not None and self.state.step >= self.settings.max_steps:
            return "max_steps"
        if self._elapsed() >= self.settings.minutes * 60.0:
            return "budget"
        if self.state.epoch >= self.settings.max_epochs:
            return "max_epochs"
        return ""

    def _save(self, path: Path) -> None:
        self.state.elapsed_seconds = self._elapsed()
        save_checkpoint(
            {
                "model": self.workspace.model,
                "state_dict": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "hyperparameters": self.record,
                "train_images": len(self.train_set),
                "state": asdict(self.state),
            },
            path,
        )

    def _progress(self) -> float:
        """How far through its limits (time, and steps when capped) the run is, 0..1."""
        progress = self._elapsed() / max(1e-9, self.settings.minutes * 60.0)
        if self.settings.max_steps:
            progress = max(progress, self.state.step / self.settings.max_steps)
        return progress

    def _set_learning_rate(self) -> None:
        # Cosine decay over the budget, so a run cut by its time limit still ends annealed.
        rate = self.hyper.learning_rate * cosine_learning_rate_factor(self._progress())
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _train_until_epoch_end_or_stop(self, batches: list[list[int]]) -> str:
        """Step through the rest of this epoch's batches; returns a stop reason or ""."""
        last_save = time.monotonic()
        remaining = batches[self.state.batch_in_epoch :]
        for images, targets in iterate_batches(self.train_set, remaining, self.settings.workers):
            self._set_learning_rate()
            loss = train_step(
                self.network,
                self.optimizer,
                self.loss_fn,
                images,
                targets,
                self.settings.bf16,
                self.settings.freeze_batch_norm,
            )
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at step {self.state.step} (loss {loss}); "
                    "lower the learning rate and pass --fresh"
                )
            self.state.step += 1
            self.state.batch_in_epoch += 1
            self.state.loss_sum += loss
            self.state.loss_count += 1
            reason = self._stop_reason()
            if reason:
                return reason
            if time.monotonic() - last_save >= self.settings.checkpoint_minutes * 60.0:
                self._save(self.workspace.checkpoint)
                last_save = time.monotonic()
        return ""

    def _validate_and_record(self, position: float) -> None:
        metrics = validate(
            self.network,
            self.validation_set,
            self.loss_fn,
            self.spec.task,
            self.settings.bf16,
            workers=self.settings.workers,
        )
        row = {
            "epoch": round(position, 4),
            "step": self.state.step,
            "minutes": round(self._elapsed() / 60.0, 3),
            "train_loss": self.state.loss_sum / max(1, self.state.loss_count),
            **{f"val_{key}": value for key, value in metrics.items()},
        }
        self.state.history.append(row)
        self.state.loss_sum, self.state.loss_count = 0.0, 0
        value = metrics[self.metric_name]
        if is_better(value, self.state.best_value, self.direction):
            self.state.best_value, self.state.best_epoch = value, position
            self._save(self.workspace.best_checkpoint)
        self._save(self.workspace.checkpoint)
        write_history_csv(self.state.history, self.workspace.history_csv)
        plot_history(
            self.state.history, self.spec.task, self.workspace.run_training_plot, self.spec.title
        )

    def run(self) -> TrainResult:
        """Train epoch by epoch, validating after each and whenever a limit stops it."""
        reason = self._stop_reason()
        stopped_by = "already_done" if reason else ""
        while not stopped_by:
            batches = epoch_batches(
                len(self.train_set), self.hyper.batch_size, self.settings.seed, self.state.epoch
            )
            reason = self._train_until_epoch_end_or_stop(batches)
            position = self.state.epoch + self.state.batch_in_epoch / len(batches)
            if self.state.batch_in_epoch >= len(batches):
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
            self._validate_and_record(position)
            stopped_by = reason or self._stop_reason()
        return TrainResult(
            epochs=self.state.history[-1]["epoch"] if self.state.history else 0.0,
            steps=self.state.step,
            minutes=self._elapsed() / 60.0,
            best_metric=self.metric_name,
            best_value=self.state.best_value,
            stopped_by=stopped_by,
        )


def train(workspace: Workspace, settings: TrainSettings) -> TrainResult:
    """Train the workspace's model until its time, step or epoch limit; resumes a checkpoint."""
    return TrainingRun(workspace, settings).run()
