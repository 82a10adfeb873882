"""Fit the lineage model's count calibration on the training split, and record it.

The network, trained by mean-squared error behind a sigmoid, compresses its answers towards the
middle of each lineage's range (docs/training.md, "Count calibration"). An isotonic regression
per lineage, of the true counts on the network's counts over the training images (never the
validation or test ones), gives a monotone curve that undoes this; the app applies it from the
card (`devolearn_web.lineage_counts`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from devolearn_web.file_digest import file_sha256
from devolearn_web.lineage_counts import network_counts
from devolearn_web.training.cards import write_card
from devolearn_web.training.evaluate import (
    DEFAULT_SAMPLES_DIR,
    card_metrics,
    evaluate,
    lineage_outputs,
)
from devolearn_web.training.isotonic import CALIBRATION_SPLIT, fit_calibration
from devolearn_web.training.layout import Workspace
from devolearn_web.training.onnx_runner import OnnxModel
from devolearn_web.training.specs import LINEAGE_MAXIMA, get_spec


def split_counts(onnx: OnnxModel, index_csv: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(the network's counts before rounding, float (N, 7); the true counts, int (N, 7))."""
    scaled, truth = lineage_outputs(onnx, index_csv, split)
    return network_counts(scaled, LINEAGE_MAXIMA), truth


def record_calibration(workspace: Workspace, threads: int = 2) -> dict:
    """Fit the calibration of models/<model>.onnx and write runs/<model>/calibration.json."""
    if get_spec(workspace.model).is_segmentation:
        raise ValueError("calibrate is for the lineage model; segmentation maps need none")
    onnx_path = workspace.onnx_path
    onnx = OnnxModel(onnx_path, threads)
    raw, truth = split_counts(onnx, workspace.index_csv, CALIBRATION_SPLIT)
    calibration = fit_calibration(raw, truth)
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    record = {"sha256": file_sha256(onnx_path), "calibration": calibration}
    workspace.calibration_record.write_text(json.dumps(record, indent=2) + "\n")
    return record


def calibrate(
    workspace: Workspace, threads: int = 2, samples_dir: Path = DEFAULT_SAMPLES_DIR
) -> dict:
    """Fit and record the calibration, re-evaluate with it, and update the file's card."""
    record = record_calibration(workspace, threads)
    metrics = evaluate(workspace, workspace.onnx_path, samples_dir, threads=threads)
    if workspace.card_path.exists():
        # The card of this very file takes the curve and the metrics measured through it, in
        # one write, so a shipped model can be calibrated without its training run's records.
        card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
        if card.get("sha256") == record["sha256"]:
            card["output"]["calibration"] = record["calibration"]
            card["metrics"] = card_metrics(metrics)
            write_card(card, workspace.card_path)
    return {"calibration": workspace.calibration_record.as_posix(), "test": metrics["test"]}
