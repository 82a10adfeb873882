"""One call that reproduces a model: every step from simulation to the model card."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from devolearn_web.catalogue import entry
from devolearn_web.training.calibrate import record_calibration
from devolearn_web.training.evaluate import evaluate
from devolearn_web.training.layout import Workspace
from devolearn_web.training.package import write_bioimageio_package
from devolearn_web.training.preprocess import preprocess
from devolearn_web.training.shipping import export_trained_model, write_trained_card
from devolearn_web.training.simulate import SimulationPlan, simulate
from devolearn_web.training.train import TrainSettings, train
from devolearn_web.training.tune import TuneSettings, tune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSettings:
    """Everything `all` needs; `tune` None skips tuning (train then uses defaults or flags)."""

    simulation: SimulationPlan
    tune: TuneSettings | None
    train: TrainSettings
    samples_dir: Path
    threshold: float
    version: str
    processes: int = 1  # for simulate and preprocess; their files do not depend on it


def run_all(workspace: Workspace, settings: PipelineSettings) -> dict:
    """Run every step; each one skips or resumes work already done, so a rerun continues."""
    log.info("simulate")
    simulate(workspace, settings.simulation, processes=settings.processes)
    log.info("preprocess")
    preprocess(workspace, processes=settings.processes)
    if settings.tune is not None:
        log.info("tune")
        tune(workspace, settings.tune)
    log.info("train")
    result = train(workspace, settings.train)
    log.info("export")
    export = export_trained_model(workspace)
    if entry(workspace.model).task == "lineage":
        log.info("calibrate")
        record_calibration(workspace)
    log.info("evaluate")
    metrics = evaluate(workspace, samples_dir=settings.samples_dir, threshold=settings.threshold)
    log.info("card")
    card = write_trained_card(workspace, settings.version)
    log.info("bioimageio")
    package = write_bioimageio_package(workspace)
    return {
        "train": asdict(result),
        "export": export,
        "metrics": metrics,
        "card": card["name"],
        "bioimageio": package["package"],
    }
