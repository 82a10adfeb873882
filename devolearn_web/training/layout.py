"""Where each step of the pipeline reads and writes, for one model (paths only, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Workspace:
    """The folders of one model's pipeline, all derived from four roots."""

    model: str
    data_root: Path = Path("data")
    runs_root: Path = Path("runs")
    models_dir: Path = Path("models")
    docs_images_dir: Path = Path("docs/images")

    @property
    def data_dir(self) -> Path:
        return self.data_root / self.model

    def simulated_split_dir(self, split: str) -> Path:
        return self.data_dir / "simulated" / split

    @property
    def simulation_record(self) -> Path:
        return self.data_dir / "simulation.json"

    @property
    def data_commands_record(self) -> Path:
        """The command lines that made this data set: they belong to it, not to one run."""
        return self.data_dir / "commands.json"

    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"

    @property
    def index_csv(self) -> Path:
        return self.processed_dir / "index.csv"

    @property
    def sources_record(self) -> Path:
        return self.processed_dir / "sources.json"

    @property
    def run_dir(self) -> Path:
        return self.runs_root / self.model

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def history_csv(self) -> Path:
        return self.run_dir / "history.csv"

    @property
    def optuna_db(self) -> Path:
        return self.run_dir / "optuna.db"

    @property
    def best_params(self) -> Path:
        return self.run_dir / "best_params.json"

    @property
    def metrics_json(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def ceiling_record(self) -> Path:
        return self.run_dir / "ceiling.json"

    @property
    def export_record(self) -> Path:
        return self.run_dir / "export.json"

    @property
    def unblended_onnx(self) -> Path:
        """The fine-tune's own export when the shipped file blends it with its start."""
        return self.run_dir / f"{self.model}.unblended.onnx"

    @property
    def calibration_record(self) -> Path:
        return self.run_dir / "calibration.json"

    @property
    def commands_record(self) -> Path:
        return self.run_dir / "commands.json"

    @property
    def onnx_path(self) -> Path:
        return self.models_dir / f"{self.model}.onnx"

    @property
    def card_path(self) -> Path:
        return self.models_dir / f"{self.model}.json"

    @property
    def training_plot(self) -> Path:
        """The shipped plot, beside the model file (copied there when its card is written)."""
        return self.models_dir / f"{self.model}_training.png"

    @property
    def run_training_plot(self) -> Path:
        """The run's own plot: a run that is never shipped must not replace the shipped one."""
        return self.run_dir / "training.png"

    @property
    def real_overlay(self) -> Path:
        return self.docs_images_dir / f"{self.model}_real_overlay.png"
