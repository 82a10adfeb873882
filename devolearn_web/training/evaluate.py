"""Measure the exported ONNX file on the test split and on the real sample images."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devolearn_web.catalogue import entry
from devolearn_web.file_digest import file_sha256
from devolearn_web.segmentation import (
    MIN_OBJECT_AREA_AT_MODEL_SCALE,
    label_instances,
)
from devolearn_web.training.cards import THRESHOLD_SOURCE, write_card
from devolearn_web.training.dataset import lineage_input
from devolearn_web.training.images import (
    GREEN,
    lineage_network_image,
    network_image,
    read_gray,
    read_labels,
    read_unit_image,
    to_unit_range,
)
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
from devolearn_web.training.overlays import save_object_overlay, save_population_overlay
from devolearn_web.training.specs import (
    DEFAULT_THRESHOLD,
    LINEAGE_MAXIMA,
    LINEAGES,
    MODEL_SIDE,
    counts_from_scaled,
    get_spec,
)

# What the issue asks of each model (README of the models); recorded next to the results.
TARGETS = {
    "nucleus": {"seg": (">=", 0.85), "iou": (">=", 0.90)},
    "membrane": {"iou": (">=", 0.90), "count_error_percent": ("<=", 10.0)},
    "lineage": {"max_mae_percent_of_maximum": ("<=", 5.0)},
}
REAL_SAMPLE_RANGES = {"nucleus": (60, 120), "membrane": (4, 7), "lineage": (50, 150)}
DEFAULT_SAMPLES_DIR = Path("../shared/samples")


@dataclass(frozen=True)
class RealSample:
    """A real image and how to read its signal: channel None means grayscale."""

    file: str
    channel: int | None


REAL_SAMPLES = {
    "nucleus": RealSample("embryo_sample.png", GREEN),
    "membrane": RealSample("seg_sample.jpg", None),
    "lineage": RealSample("embryo_sample.png", GREEN),
}


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


def real_sample_input(path: Path, channel: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(the signal at full size for display, float32 [0, 1]; the network's 256x256 input)."""
    signal = read_gray(path, channel)
    return to_unit_range(signal), network_image(signal, MODEL_SIDE)


def evaluate_real_sample(
    model: str,
    onnx: OnnxModel,
    samples_dir: Path,
    overlay_path: Path,
    threshold: float = DEFAULT_THRESHOLD,
    calibration: dict | None = None,
) -> dict:
    """Counts on the model's real sample image, with an overlay figure saved for the docs."""
    sample = REAL_SAMPLES[model]
    path = samples_dir / sample.file
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --samples-dir")
    full, small = real_sample_input(path, sample.channel)
    channel = {None: "grayscale", GREEN: "green"}[sample.channel]
    low, high = REAL_SAMPLE_RANGES[model]
    if entry(model).task == "lineage":
        small = lineage_network_image(read_gray(path, sample.channel), MODEL_SIDE)
        counts = counts_from_scaled(onnx.run(lineage_input(small)[None])[0], calibration)
        populations = {name: int(c) for name, c in zip(LINEAGES, counts, strict=True)}
        total = int(sum(populations.values()))
        save_population_overlay(full, populations, overlay_path)
        result = {"populations": populations, "total": total}
        value = total
    else:
        probability = onnx.run(small[None, None])[0, 0]
        labels = _instances(model, probability, threshold)
        noun = entry(model).page.count_noun
        title = f"{sample.file}: {int(labels.max())} {noun} (threshold {threshold})"
        # Cells between bright outlines are shown filled; nuclei (solid blobs) as outlines.
        fill = entry(model).expects_outlines
        save_object_overlay(full, labels, title, overlay_path, fill=fill)
        result = {"count": int(labels.max())}
        value = result["count"]
    result.update(
        channel=channel,
        expected_range=[low, high],
        within_expected_range=bool(low <= value <= high),
        overlay=overlay_path.as_posix(),
    )
    return {sample.file: result}


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


def evaluate(
    workspace: Workspace,
    onnx_path: Path | None = None,
    samples_dir: Path = DEFAULT_SAMPLES_DIR,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 2,
) -> dict:
    """Evaluate the ONNX file that ships; write runs/<model>/metrics.json and the overlay."""
    spec = get_spec(workspace.model)
    onnx_path = onnx_path or workspace.onnx_path
    onnx = OnnxModel(onnx_path, threads)
    sha256 = file_sha256(onnx_path)
    calibration = None
    if spec.is_segmentation:
        test = evaluate_segmentation(workspace.model, onnx, workspace.index_csv, threshold)
    else:
        calibration = recorded_calibration(workspace, sha256)
        test = evaluate_lineage(onnx, workspace.index_csv, calibration)
    metrics = {
        "model": workspace.model,
        "onnx": onnx_path.as_posix(),
        "sha256": sha256,
        "test": test,
        "targets": check_targets(workspace.model, test),
    }
    if spec.is_segmentation:
        metrics["threshold"] = threshold
    if (samples_dir / REAL_SAMPLES[workspace.model].file).exists():
        metrics["real_samples"] = evaluate_real_sample(
            workspace.model, onnx, samples_dir, workspace.real_overlay, threshold, calibration
        )
    else:
        metrics["real_samples"] = {}
        metrics["real_samples_missing"] = f"{samples_dir} holds no real sample images"
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    workspace.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
