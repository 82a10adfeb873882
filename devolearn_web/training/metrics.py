"""Accuracy measures on numpy arrays: IoU, Dice, the Cell Tracking Challenge SEG, count errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OverlapTally:
    """Pixel counts pooled over many images, so IoU and Dice weigh every pixel alike."""

    intersection: float = 0.0
    predicted: float = 0.0
    reference: float = 0.0

    def add(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        """Add one pair of boolean masks (same shape)."""
        self.intersection += float(np.logical_and(predicted, reference).sum())
        self.predicted += float(predicted.sum())
        self.reference += float(reference.sum())

    @property
    def iou(self) -> float:
        union = self.predicted + self.reference - self.intersection
        return 1.0 if union == 0 else self.intersection / union

    @property
    def dice(self) -> float:
        total = self.predicted + self.reference
        return 1.0 if total == 0 else 2.0 * self.intersection / total


def seg_scores(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """CTC SEG score of each reference object (int label maps HxW, 0 = background): float (R,)."""
    # A reference object R is matched by the predicted object S covering more than half of it
    # (|R ∩ S| > 0.5 |R|, so at most one S qualifies); it scores |R ∩ S| / |R ∪ S|, else 0.
    if reference.shape != predicted.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {predicted.shape}")
    ref_ids, ref_index = np.unique(reference, return_inverse=True)
    pred_ids, pred_index = np.unique(predicted, return_inverse=True)
    # Pixel counts of every (reference, predicted) pair, in one bincount of combined indices.
    combined = ref_index.ravel().astype(np.int64) * pred_ids.size + pred_index.ravel()
    pairs = np.bincount(combined, minlength=ref_ids.size * pred_ids.size).reshape(
        ref_ids.size, pred_ids.size
    )
    ref_sizes = pairs.sum(axis=1)
    pred_sizes = pairs.sum(axis=0)
    ref_rows = np.nonzero(ref_ids != 0)[0]
    pred_cols = np.nonzero(pred_ids != 0)[0]
    if pred_cols.size == 0:
        return np.zeros(ref_rows.size)
    overlaps = pairs[np.ix_(ref_rows, pred_cols)]
    best = overlaps.argmax(axis=1)
    best_overlap = overlaps[np.arange(ref_rows.size), best]
    union = ref_sizes[ref_rows] + pred_sizes[pred_cols[best]] - best_overlap
    matched = best_overlap > 0.5 * ref_sizes[ref_rows]
    return np.where(matched, best_overlap / union, 0.0)


def reference_areas(reference: np.ndarray) -> np.ndarray:
    """Pixel areas of the reference objects, in the order `seg_scores` scores them: int (R,)."""
    ids, areas = np.unique(reference, return_counts=True)
    return areas[ids != 0]


# Reference object areas (pixels at the scoring scale) that SEG is also reported by.
AREA_BINS = ((0, 20), (20, 50), (50, 100), (100, 200), (200, None))


def seg_by_area(scores: np.ndarray, areas: np.ndarray) -> dict:
    """Mean SEG and object count of each reference-area bin (empty bins left out)."""
    table = {}
    for low, high in AREA_BINS:
        inside = (areas >= low) & (areas < (high if high is not None else np.inf))
        if inside.any():
            name = f"{low}-{high} px" if high is not None else f"{low} px and over"
            table[name] = {"objects": int(inside.sum()), "seg": float(scores[inside].mean())}
    return table


def seg_measure(reference: np.ndarray, predicted: np.ndarray) -> float:
    """Mean SEG score over the reference objects of one image; nan when it has none."""
    scores = seg_scores(reference, predicted)
    return float(scores.mean()) if scores.size else float("nan")


def count_objects(labels: np.ndarray, min_area: int = 1) -> int:
    """How many labelled objects (int HxW) cover at least `min_area` pixels."""
    sizes = np.bincount(labels[labels > 0].ravel())
    return int((sizes >= min_area).sum())


def count_error_percent(predicted: int, reference: int) -> float:
    """|predicted - reference| as a percentage of the reference count (nan when it is 0)."""
    if reference == 0:
        return float("nan")
    return 100.0 * abs(predicted - reference) / reference
