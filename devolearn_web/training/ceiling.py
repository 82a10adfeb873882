"""The best any network of the shipped architecture could score: its output fitted to the labels.

segmentation_models_pytorch's FPN computes its logits at a quarter of the input's size and
upsamples them bilinearly (align_corners=True) to 256x256, so its map cannot draw detail finer
than that grid: a one-pixel gap between two touching nuclei, or a nucleus a few pixels wide.
Here that logit grid is fitted, image by image, to the test labels themselves (a network that
knew the answer), and scored as `evaluate` scores the model: pixel IoU, CTC SEG with the app's
own split, and SEG with an ideal split (every predicted pixel given to the nearest reference
object), which separates what the map cannot draw from what the split gets wrong.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from scipy import ndimage as ndi

from devolearn_web.file_digest import file_sha256
from devolearn_web.segmentation import MIN_OBJECT_AREA_AT_MODEL_SCALE, label_instances
from devolearn_web.training.cards import write_card
from devolearn_web.training.images import read_labels
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
from devolearn_web.training.specs import DEFAULT_THRESHOLD, get_spec

# smp's FPN: the segmentation head's logits are at stride 4, then nn.Upsample(scale_factor=4,
# mode="bilinear", align_corners=True). tests/training/test_ceiling.py checks the built model.
OUTPUT_STRIDE = 4
FIT_BATCH = 64


def fit_output_grid(
    masks: np.ndarray, steps: int = 300, learning_rate: float = 0.3, threads: int = 2
) -> np.ndarray:
    """Probability maps (float32 N x H x W) drawn by the FPN's output grid fitted to boolean masks.

    The grid's logits start from each cell's foreground fraction and are fitted by Adam to the
    pixel-wise cross-entropy, the loss the network itself is trained with."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    fitted = []
    for start in range(0, len(masks), FIT_BATCH):
        target = torch.from_numpy(masks[start : start + FIT_BATCH].astype(np.float32))[:, None]
        coverage = F.avg_pool2d(target, OUTPUT_STRIDE).clamp(0.02, 0.98)
        logits = torch.log(coverage / (1 - coverage)).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=learning_rate)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(_upsample(logits), target)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            fitted.append(torch.sigmoid(_upsample(logits))[:, 0].numpy())
    return np.concatenate(fitted).astype(np.float32)


def _upsample(logits):
    import torch.nn.functional as F

    return F.interpolate(logits, scale_factor=OUTPUT_STRIDE, mode="bilinear", align_corners=True)


def ideal_split(mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The mask's pixels labelled by their nearest reference object (int32 HxW): a perfect split."""
    if not (reference > 0).any():
        return np.zeros(mask.shape, dtype=np.int32)
    rows, cols = ndi.distance_transform_edt(
        reference == 0, return_distances=False, return_indices=True
    )
    return np.where(mask, reference[rows, cols], 0).astype(np.int32)


def score_fitted_maps(
    model: str,
    probabilities: np.ndarray,
    references: np.ndarray,
    kinds: list[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """IoU, SEG (the app's split and an ideal one) and count error, overall and by sample kind."""
    groups: dict[str, dict] = defaultdict(
        lambda: {"tally": OverlapTally(), "app": [], "ideal": [], "areas": [], "counts": []}
    )
    for probability, reference, kind in zip(probabilities, references, kinds, strict=True):
        mask = probability >= threshold
        labels = label_instances(model, probability, threshold)
        expected = count_objects(reference, MIN_OBJECT_AREA_AT_MODEL_SCALE)
        for group in (groups["all"], groups[kind]):
            group["tally"].add(mask, reference > 0)
            group["app"].append(seg_scores(reference, labels))
            group["ideal"].append(seg_scores(reference, ideal_split(mask, reference)))
            group["areas"].append(reference_areas(reference))
            group["counts"].append(count_error_percent(int(labels.max()), expected))
    results = {}
    for name, group in groups.items():
        app, ideal = np.concatenate(group["app"]), np.concatenate(group["ideal"])
        areas = np.concatenate(group["areas"])
        counts = [value for value in group["counts"] if not np.isnan(value)]
        results[name] = {
            "images": len(group["counts"]),
            "iou": group["tally"].iou,
            "seg": float(app.mean()) if app.size else None,
            "seg_ideal_split": float(ideal.mean()) if ideal.size else None,
            "count_error_percent": float(np.mean(counts)) if counts else None,
            "seg_by_reference_area": seg_by_area(app, areas),
            "seg_ideal_split_by_reference_area": seg_by_area(ideal, areas),
        }
    overall = results.pop("all")
    if len(results) > 1:
        overall["by_kind"] = results
    return overall


def measure_ceiling(
    workspace: Workspace,
    split: str = "test",
    steps: int = 300,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 2,
) -> dict:
    """Fit the output grid to one split's labels, score it, write runs/<model>/ceiling.json."""
    if not get_spec(workspace.model).is_segmentation:
        raise ValueError("the ceiling is measured for the segmentation models only")
    rows = read_index(workspace.index_csv, split)
    if not rows:
        raise ValueError(f"{workspace.index_csv} has no {split} samples")
    root = workspace.index_csv.parent
    references = np.stack([read_labels(root / row["label"]) for row in rows])
    probabilities = fit_output_grid(references > 0, steps=steps, threads=threads)
    record = {
        "what": (
            "The best the architecture's output could do: its 64x64 logit grid (upsampled x4 "
            "bilinearly) fitted to the labels themselves, then scored as the model is. "
            "seg uses the app's split; seg_ideal_split gives each pixel to its nearest "
            "reference object."
        ),
        "split": split,
        "index_sha256": file_sha256(workspace.index_csv),
        "fit_steps": steps,
        "threshold": threshold,
        **score_fitted_maps(
            workspace.model, probabilities, references, [row["kind"] for row in rows], threshold
        ),
    }
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    workspace.ceiling_record.write_text(json.dumps(record, indent=2) + "\n")
    return record


def recorded_ceiling(workspace: Workspace) -> dict | None:
    """ceiling.json when it was measured on the current index (else None): for the card."""
    path = workspace.ceiling_record
    if not path.exists() or not workspace.index_csv.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("index_sha256") == file_sha256(workspace.index_csv) else None


def put_ceiling_in_card(workspace: Workspace, record: dict) -> bool:
    """Add the ceiling to models/<model>.json as metrics.ceiling; False when there is no card."""
    if not workspace.card_path.exists():
        return False
    card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
    card.setdefault("metrics", {})["ceiling"] = record
    write_card(card, workspace.card_path)
    return True
