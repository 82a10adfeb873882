"""Measure the exported ONNX file on the test split and on the real sample images."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from devolearn_web.file_digest import file_sha256
from devolearn_web.segmentation import (
    MIN_OBJECT_AREA_AT_MODEL_SCALE,
    label_instances,
)
from devolearn_web.training.cards import THRESHOLD_SOURCE, write_card
from devolearn_web.training.dataset import lineage_input
from devolearn_web.training.images import read_labels, read_unit_image
from devolearn_web.training.index import read_index
from devolearn_web.training.layout import Workspace
from devolearn_web.training.metrics import (
    OverlapTally,
    count_error_percent,
    count_objects,
    reference_areas,
    seg_by_area,
    seg_scores,
)
from devolearn_web.training.onnx_runner import OnnxModel
from devolearn_web.training.real_samples import REAL_SAMPLES, evaluate_real_sample
from devolearn_web.training.specs import (
    DEFAULT_THRESHOLD,
    LINEAGE_MAXIMA,
    LINEAGES,
    counts_from_scaled,
    get_spec,
)

# What the issue asks of each model (README of the models); recorded next to the results.
TARGETS = {
    "nucleus": {"seg": (">=", 0.85), "iou": (">=", 0.90)},
    "membrane": {"iou": (">=", 0.90), "count_error_percent": ("<=", 10.0)},
    "lineage": {"max_mae_percent_of_maximum": ("<=", 5.0)},
}
DEFAULT_SAMPLES_DIR = Path("../shared/samples")


def _mean(values: list[float]) -> float | None:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.mean(finite)) if finite else None


def _instances(model: str, probability: np.ndarray, threshold: float) -> np.ndarray:
    """Objects exactly as the app counts them (int32 HxW)."""
    return label_instances(model, probability, threshold)


def evaluate_segmentation(
    model: str, onnx: OnnxModel, index_csv: Path, threshold: float = DEFAULT_THRESHOLD
) -> dict:
    """IoU, Dice, CTC SEG and count error of the test split, overall and by sample kind."""
    rows = read_index(index_csv, "test")
    if not rows:
        raise ValueError(f"{index_csv} has no test samples")
    root = index_csv.parent
    groups: dict[str, dict] = defaultdict(
        lambda: {"tally": OverlapTally(), "seg": [], "areas": [], "count_errors": [], "images": 0}
    )
    for start in range(0, len(rows), 32):
        chunk = rows[start : start + 32]
        images = np.stack([read_unit_image(root / row["image"]) for row in chunk])[:, None]
        probabilities = onnx.run(images)[:, 0]
        for row, probability in zip(chunk, probabilities, strict=True):
            reference = read_labels(root / row["label"])
            predicted = _instances(model, probability, threshold)
            expected = count_objects(reference, MIN_OBJECT_AREA_AT_MODEL_SCALE)
            scores, areas = seg_scores(reference, predicted), reference_areas(reference)
            for group in (groups["all"], groups[row["kind"]]):
                group["tally"].add(probability >= threshold, reference > 0)
                group["seg"].append(scores)
                group["areas"].append(areas)
                group["count_errors"].append(count_error_percent(int(predicted.max()), expected))
                group["images"] += 1
    results = {}
    for name, group in groups.items():
        scores = np.concatenate(group["seg"])
        results[name] = {
            "images": group["images"],
            "iou": group["tally"].iou,
            "dice": group["tally"].dice,
            "seg": float(scores.mean()) if scores.size else None,
            # Where SEG is lost: small objects (a nucleus cut near its top) score lowest.
            "seg_by_reference_area": seg_by_area(scores, np.concatenate(group["areas"])),
            "count_error_percent": _mean(group["count_errors"]),
        }
    overall = results.pop("all")
    if len(results) > 1:
        overall["by_kind"] = results
    return overall


def recorded_calibration(workspace: Workspace, sha256: str) -> dict | None:
    """The count calibration `calibrate` fitted for this very file (same sha256), else None."""
    path = workspace.calibration_record
    record = json.loads(path.read_text()) if path.exists() else None
    if record is None or record.get("sha256") != sha256:
        return None
    return record["calibration"]


def served_calibration(workspace: Workspace, sha256: str) -> dict | None:
    """The calibration the app reads this file's counts through: the run's record, else that of
    the card describing this very file (a shipped model measured without its run's records)."""
    recorded = recorded_calibration(workspace, sha256)
    if recorded is not None or not workspace.card_path.exists():
        return recorded
    card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
    if card.get("sha256") != sha256:
        return None
    return card.get("output", {}).get("calibration")


def _count_errors(predicted: np.ndarray, truth: np.ndarray) -> dict:
    mae = np.abs(predicted - truth).mean(axis=0)
    percent = 100.0 * mae / np.asarray(LINEAGE_MAXIMA, dtype=np.float64)
    return {
        "images": len(truth),
        "mae": {name: float(value) for name, value in zip(LINEAGES, mae, strict=True)},
        "mae_percent_of_maximum": {
            name: float(value) for name, value in zip(LINEAGES, percent, strict=True)
        },
        "mae_percent_mean": float(percent.mean()),
        "max_mae_percent_of_maximum": float(percent.max()),
    }


def lineage_outputs(onnx: OnnxModel, index_csv: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(the network's scaled outputs, float (N, 7); the true counts, int (N, 7)) of a split."""
    rows = read_index(index_csv, split)
    if not rows:
        raise ValueError(f"{index_csv} has no {split} samples")
    root = index_csv.parent
    scaled = np.concatenate(
        [
            onnx.run(np.stack([lineage_input(read_unit_image(root / r["image"])) for r in chunk]))
            for chunk in (rows[i : i + 32] for i in range(0, len(rows), 32))
        ]
    )
    return scaled, np.array([[int(row[name]) for name in LINEAGES] for row in rows])


def evaluate_lineage(onnx: OnnxModel, index_csv: Path, calibration: dict | None = None) -> dict:
    """Mean absolute error per lineage on the test split, in cells and in % of its maximum.

    With a calibration the counts are read as the app reads them; the network's own rounded
    counts are reported beside them under `uncalibrated`."""
    scaled, truth = lineage_outputs(onnx, index_csv, "test")
    result = _count_errors(counts_from_scaled(scaled, calibration), truth)
    if calibration is not None:
        result["uncalibrated"] = _count_errors(counts_from_scaled(scaled), truth)
    return result


def check_targets(model: str, test: dict) -> dict:
    """Each target of the issue with the measured value and whether it is met."""
    checks = {}
    for key, (relation, bound) in TARGETS[model].items():
        value = test.get(key)
        met = value is not None and (value >= bound if relation == ">=" else value <= bound)
        checks[key] = {"target": f"{relation} {bound}", "value": value, "met": bool(met)}
    return checks


def card_metrics(metrics: dict) -> dict:
    """The part of an evaluation (metrics.json) that a model card records."""
    keep = ("test", "targets", "real_samples", "threshold")
    return {key: metrics[key] for key in keep if key in metrics}


def update_card_metrics(workspace: Workspace, metrics: dict) -> bool:
    """Put new metrics into models/<model>.json when it describes the file they measured.

    So a shipped model can be re-measured (after a change to counting, or a calibration)
    without the records of the run that trained it; returns whether the card was updated."""
    if not workspace.card_path.exists():
        return False
    card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
    if card.get("sha256") != metrics["sha256"]:
        return False
    ceiling = card.get("metrics", {}).get("ceiling")  # about the labels: still true
    card["metrics"] = card_metrics(metrics)
    if ceiling is not None:
        card["metrics"]["ceiling"] = ceiling
    if "threshold" in metrics:
        # The slider starts where the card's figures were measured.
        card["output"]["default_threshold"] = metrics["threshold"]
        card["output"].pop(THRESHOLD_SOURCE, None)  # now measured here, no longer carried over
    write_card(card, workspace.card_path)
    return True


def real_sample_metrics(
    workspace: Workspace,
    onnx_path: Path,
    samples_dir: Path,
    threshold: float,
    calibration: dict | None,
    threads: int,
) -> dict:
    """metrics.json's real_samples (the app's answer on each), or why there are none."""
    if not (samples_dir / REAL_SAMPLES[workspace.model].file).exists():
        return {
            "real_samples": {},
            "real_samples_missing": f"{samples_dir} holds no real sample images",
        }
    answer = evaluate_real_sample(
        workspace.model,
        onnx_path,
        samples_dir,
        workspace.real_overlay,
        threshold,
        calibration,
        threads,
    )
    return {"real_samples": answer}


def evaluate(
    workspace: Workspace,
    onnx_path: Path | None = None,
    samples_dir: Path = DEFAULT_SAMPLES_DIR,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 2,
) -> dict:
    """Evaluate the ONNX file that ships; write runs/<model>/metrics.json and the overlay."""
    onnx_path = onnx_path or workspace.onnx_path
    metrics, calibration = _measured_file(workspace, onnx_path, threshold)
    onnx = OnnxModel(onnx_path, threads)
    if get_spec(workspace.model).is_segmentation:
        test = evaluate_segmentation(workspace.model, onnx, workspace.index_csv, threshold)
    else:
        test = evaluate_lineage(onnx, workspace.index_csv, calibration)
    metrics.update(test=test, targets=check_targets(workspace.model, test))
    metrics.update(
        real_sample_metrics(workspace, onnx_path, samples_dir, threshold, calibration, threads)
    )
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    workspace.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _measured_file(
    workspace: Workspace, onnx_path: Path, threshold: float
) -> tuple[dict, dict | None]:
    """The record naming the file measured (and the threshold, for segmentation), with the
    count calibration the app reads a lineage file through."""
    sha256 = file_sha256(onnx_path)
    record = {"model": workspace.model, "onnx": onnx_path.as_posix(), "sha256": sha256}
    if get_spec(workspace.model).is_segmentation:
        record["threshold"] = threshold
        return record, None
    return record, served_calibration(workspace, sha256)


def evaluate_real_samples_only(
    workspace: Workspace,
    onnx_path: Path | None = None,
    samples_dir: Path = DEFAULT_SAMPLES_DIR,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 2,
) -> dict:
    """Only the real samples (seconds, not the test split), after a change to the app's path;
    they replace those of metrics.json when it measured this very file at this threshold."""
    onnx_path = onnx_path or workspace.onnx_path
    record, calibration = _measured_file(workspace, onnx_path, threshold)
    record.update(
        real_sample_metrics(workspace, onnx_path, samples_dir, threshold, calibration, threads)
    )
    metrics = (
        json.loads(workspace.metrics_json.read_text()) if workspace.metrics_json.exists() else {}
    )
    if _same_measurement(metrics, record):
        metrics.pop("real_samples_missing", None)
        metrics.update(record)
        workspace.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return record


def update_card_real_samples(workspace: Workspace, record: dict) -> bool:
    """Put new real-sample figures into models/<model>.json, every other field kept, when the
    card describes the file and threshold they were measured at; returns whether it did."""
    if not workspace.card_path.exists():
        return False
    card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
    if not _same_measurement(card.get("metrics", {}) | {"sha256": card.get("sha256")}, record):
        return False
    card.setdefault("metrics", {})["real_samples"] = record["real_samples"]
    write_card(card, workspace.card_path)
    return True


def _same_measurement(metrics: dict, record: dict) -> bool:
    """Whether metrics measured the file (and at the threshold) that record did."""
    same_file = metrics.get("sha256") == record["sha256"]
    return same_file and metrics.get("threshold") == record.get("threshold")
