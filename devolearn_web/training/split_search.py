"""Choose how touching objects are split: every SplitSettings of a grid on the validation split.

The network's probability maps are computed once; each setting then labels them as the app
does and is scored by the model's own target (CTC SEG for nuclei, cell-count error for
membranes), with its labelling time. The best setting goes into the catalogue
(devolearn_web/catalogue.py) by hand, so the app's behaviour changes only in a reviewed commit.
"""

from __future__ import annotations

import itertools
import json
import random
import time

import numpy as np

from devolearn_web.segmentation import (
    MIN_OBJECT_AREA_AT_MODEL_SCALE,
    SplitSettings,
    split_touching_objects,
    threshold_probability_map,
)
from devolearn_web.training.images import read_labels, read_unit_image
from devolearn_web.training.index import read_index
from devolearn_web.training.layout import Workspace
from devolearn_web.training.metrics import count_error_percent, count_objects, seg_scores
from devolearn_web.training.onnx_runner import OnnxModel

PEAK_WINDOWS = (2, 3, 4, 5)
SIZE_FACTORS = (0.0, 0.5, 0.75, 1.0, 1.25)
SMOOTHING_SIGMAS = (0.5, 1.0)
PROBABILITY_WEIGHTS = (0.01, 16.0)  # a tie-breaker, or the map's dips guiding the cut
# What each model is judged by in the issue: SEG for nuclei, the cell count for membranes.
OBJECTIVES = {"nucleus": ("seg", "max"), "membrane": ("count_error_percent", "min")}


def validation_maps(
    workspace: Workspace, onnx: OnnxModel, images: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Probability maps, reference labels and sample kinds of up to `images` validation samples.

    Every projection is kept (they are few and the hardest); slices fill the rest at random."""
    rows = read_index(workspace.index_csv, "validation")
    if not rows:
        raise ValueError(f"{workspace.index_csv} has no validation samples")
    random.Random(seed).shuffle(rows)
    projections = [row for row in rows if row["kind"] == "projection"]
    others = [row for row in rows if row["kind"] != "projection"]
    chosen = (projections + others)[:images]
    root = workspace.index_csv.parent
    inputs = np.stack([read_unit_image(root / row["image"]) for row in chosen])[:, None]
    probabilities = onnx.run(inputs)[:, 0].astype(np.float32)
    references = np.stack([read_labels(root / row["label"]) for row in chosen])
    return probabilities, references, [row["kind"] for row in chosen]


def score_setting(
    settings: SplitSettings,
    probabilities: np.ndarray,
    references: np.ndarray,
    kinds: list[str],
    threshold: float,
) -> dict:
    """SEG (overall and by kind), mean count error and milliseconds per map of one setting."""
    scores: dict[str, list[np.ndarray]] = {}
    errors = []
    elapsed = 0.0
    for probability, reference, kind in zip(probabilities, references, kinds, strict=True):
        started = time.perf_counter()
        mask = threshold_probability_map(probability, threshold)
        predicted = split_touching_objects(mask, smoothing=probability, settings=settings)
        elapsed += time.perf_counter() - started
        reference = reference.astype(np.int32)
        seg = seg_scores(reference, predicted)
        scores.setdefault("all", []).append(seg)
        scores.setdefault(kind, []).append(seg)
        expected = count_objects(reference, MIN_OBJECT_AREA_AT_MODEL_SCALE)
        if expected:
            errors.append(count_error_percent(int(predicted.max()), expected))
    seg_by_kind = {
        kind: round(float(np.concatenate(values).mean()), 4) for kind, values in scores.items()
    }
    return {
        "settings": {
            "peak_window": settings.peak_window,
            "smoothing_sigma": settings.smoothing_sigma,
            "size_factor": settings.size_factor,
            "probability_weight": settings.probability_weight,
        },
        "seg": seg_by_kind.pop("all"),
        "seg_by_kind": seg_by_kind,
        "count_error_percent": round(float(np.mean(errors)), 2) if errors else None,
        "ms_per_map": round(elapsed * 1000 / len(probabilities), 2),
    }


def split_search(
    workspace: Workspace, images: int = 300, threshold: float = 0.5, threads: int = 2
) -> dict:
    """Score the grid of split settings on validation maps; write runs/<model>/split_search.json."""
    if workspace.model not in OBJECTIVES:
        raise ValueError(f"the {workspace.model} model does not segment objects")
    onnx = OnnxModel(workspace.models_dir / f"{workspace.model}.onnx", threads=threads)
    probabilities, references, kinds = validation_maps(workspace, onnx, images)
    grid = itertools.product(  # in SplitSettings' field order
        PEAK_WINDOWS, SMOOTHING_SIGMAS, SIZE_FACTORS, PROBABILITY_WEIGHTS
    )
    results = [
        score_setting(SplitSettings(*setting), probabilities, references, kinds, threshold)
        for setting in grid
    ]
    metric, direction = OBJECTIVES[workspace.model]
    results.sort(key=lambda row: row[metric], reverse=direction == "max")
    # The best setting on perfect maps (the true masks): what a better network could reach
    # with this split, so a low score can be blamed on the maps or on the split.
    truth = (references > 0).astype(np.float32)
    best = SplitSettings(**results[0]["settings"])
    ceiling = score_setting(best, truth, references, kinds, threshold)
    record = {
        "model": workspace.model,
        "onnx": onnx.path.as_posix(),
        "validation_maps": len(probabilities),
        "threshold": threshold,
        "objective": f"{direction} {metric}",
        "best": results[0],
        "best_on_true_masks": {key: ceiling[key] for key in ("seg", "seg_by_kind")},
        "results": results,
    }
    out = workspace.run_dir / "split_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def format_table(record: dict) -> str:
    """The search's results as a plain-text table, best first."""
    lines = [
        f"{record['model']}: {record['validation_maps']} validation maps, {record['objective']}"
    ]
    lines.append("window  sigma  size  p-weight  SEG     count err  ms/map")
    for row in record["results"]:
        setting = row["settings"]
        # Records written before the weight existed split with the default.
        weight = setting.get("probability_weight", SplitSettings.probability_weight)
        lines.append(
            f"{setting['peak_window']:>6}  {setting['smoothing_sigma']:>5}  "
            f"{setting['size_factor']:>4}  {weight:>8}  "
            f"{row['seg']:.4f}  {row['count_error_percent']:>8}%  "
            f"{row['ms_per_map']:>6}"
        )
    lines.append(f"the best setting on the true masks: SEG {record['best_on_true_masks']['seg']}")
    return "\n".join(lines)


def main_table(workspace: Workspace, images: int, threshold: float, threads: int) -> dict:
    """Run the search and print its table; the record is returned for the JSON printout."""
    record = split_search(workspace, images, threshold, threads)
    print(format_table(record))
    return {"best": record["best"], "written": (workspace.run_dir / "split_search.json").as_posix()}
