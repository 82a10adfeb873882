"""PyTorch datasets that read feature/label pairs listed in the preprocessing index CSV."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.utils.data import Dataset

from devolearn_web.training.augment import (
    ASPECT_RANGE,
    ZOOM_RANGE,
    lineage_augmentation,
    segmentation_augmentation,
)
from devolearn_web.training.images import read_labels, read_unit_image
from devolearn_web.training.index import read_index
from devolearn_web.training.specs import LINEAGES, get_spec, lineage_maxima

Transform = Callable[..., dict]


def subset_rows(rows: list[dict], fraction: float, seed: int = 0) -> list[dict]:
    """A reproducible random `fraction` of the rows (at least one), in their original order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return rows
    count = max(1, round(len(rows) * fraction))
    chosen = sorted(random.Random(seed).sample(range(len(rows)), count))
    return [rows[i] for i in chosen]


def with_projections_repeated(rows: list[dict], repeats: int) -> list[dict]:
    """The rows with each whole-embryo projection listed `repeats` times in all."""
    # Each listing draws its own augmentation, so a repeat is a new view, not a copy.
    projections = [row for row in rows if row.get("kind") == "projection"]
    return rows + projections * (repeats - 1)


def pixels_between_objects(labels: np.ndarray) -> np.ndarray:
    """Background pixels (bool HxW) with two different objects among their 8 neighbours."""
    # The labels keep a one-pixel gap between touching nuclei; these are its pixels.
    outside = np.iinfo(np.int32).max
    objects = labels.astype(np.int32, copy=False)
    lowest = ndi.minimum_filter(np.where(objects > 0, objects, outside), size=3)
    highest = ndi.maximum_filter(objects, size=3)
    return (objects == 0) & (lowest != outside) & (highest != lowest)


# Objects under 50 px at the network's scale are mostly nuclei a slice cuts near a pole: dim,
# blurred discs that the plain loss lets the network miss or draw twice their labelled size.
SMALL_OBJECT_AREA = 50
SMALL_OBJECT_MARGIN = 2  # px around them, where that oversized drawing lands


def pixels_near_small_objects(labels: np.ndarray) -> np.ndarray:
    """Pixels (bool HxW) of objects under SMALL_OBJECT_AREA px, or within the margin of one."""
    areas = np.bincount(labels.ravel().astype(np.intp, copy=False))
    small = areas < SMALL_OBJECT_AREA
    small[0] = False
    if not small.any():
        return np.zeros(labels.shape, dtype=bool)
    return ndi.binary_dilation(small[labels], iterations=SMALL_OBJECT_MARGIN)


def loss_weights(
    labels: np.ndarray, gap_weight: float = 0.0, small_object_weight: float = 0.0
) -> np.ndarray:
    """Per-pixel cross-entropy weights (float32 HxW): 1, plus gap_weight on the gaps between
    touching objects, plus small_object_weight on and around small objects."""
    weights = np.ones(labels.shape, dtype=np.float32)
    if gap_weight:
        weights[pixels_between_objects(labels)] += np.float32(gap_weight)
    if small_object_weight:
        weights[pixels_near_small_objects(labels)] += np.float32(small_object_weight)
    return weights


class SegmentationDataset(Dataset):
    """Items: image float32 (1, H, W) in [0, 1], target float32 (1, H, W), 1 where label != 0.

    With a `gap_weight` or a `small_object_weight` the target gets a second channel: each
    pixel's weight in the cross-entropy, raised on the thin gaps between touching objects (as
    in U-Net), which the plain loss barely notices and which alone tell crowded nuclei apart,
    and on and around small objects, which it lets the network miss or draw too large."""

    def __init__(
        self,
        rows: list[dict],
        root: Path,
        transform: Transform | None = None,
        gap_weight: float = 0.0,
        small_object_weight: float = 0.0,
    ):
        self.rows = rows
        self.root = root
        self.transform = transform
        self.gap_weight = gap_weight
        self.small_object_weight = small_object_weight

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored image (float32 HxW, [0, 1]) and instance labels (int32 HxW), unaugmented."""
        row = self.rows[index]
        return read_unit_image(self.root / row["image"]), read_labels(self.root / row["label"])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.load(index)
        if self.transform is not None:
            augmented = self.transform(image=image, mask=labels)
            image, labels = np.clip(augmented["image"], 0.0, 1.0), augmented["mask"]
        target = (labels != 0).astype(np.float32)[None]
        if self.gap_weight or self.small_object_weight:
            weights = loss_weights(labels, self.gap_weight, self.small_object_weight)
            target = np.concatenate([target, weights[None]])
        return torch.from_numpy(np.ascontiguousarray(image)[None]), torch.from_numpy(target)


def lineage_input(unit_image: np.ndarray) -> np.ndarray:
    """The lineage network's input from a grayscale image: float32 (3, H, W) in [-1, 1]."""
    symmetric = (unit_image.astype(np.float32) - 0.5) / 0.5
    return np.repeat(symmetric[None], 3, axis=0)


class LineageDataset(Dataset):
    """Items: image float32 (3, H, W) in [-1, 1], target float32 (7,) = counts / maxima."""

    def __init__(self, rows: list[dict], root: Path, transform: Transform | None = None):
        self.rows = rows
        self.root = root
        self.transform = transform
        counts = np.array([[float(row[name]) for name in LINEAGES] for row in rows], np.float32)
        self.targets = counts.reshape(-1, len(LINEAGES)) / lineage_maxima()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_unit_image(self.root / self.rows[index]["image"])
        if self.transform is not None:
            image = np.clip(self.transform(image=image)["image"], 0.0, 1.0)
        return torch.from_numpy(lineage_input(image)), torch.from_numpy(self.targets[index])


def build_dataset(
    model: str,
    index_csv: Path,
    split: str,
    augment: bool = False,
    fraction: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
    augment_seed: int | None = None,
    gap_weight: float = 0.0,
    small_object_weight: float = 0.0,
    zoom_range: float = ZOOM_RANGE,
    aspect_range: float = ASPECT_RANGE,
    resolution_augmentation: bool = False,
    object_dimming: bool = True,
    projection_repeats: int = 1,
    tight_crops: float = 0.0,
) -> SegmentationDataset | LineageDataset:
    """One split's dataset: reproducible subset by fraction/limit/seed, augmentation seeded."""
    rows = subset_rows(read_index(index_csv, split), fraction, seed)
    if limit is not None:
        rows = subset_rows(rows, min(1.0, limit / max(1, len(rows))), seed)
    rows = with_projections_repeated(rows, projection_repeats)
    if not rows:
        raise ValueError(f"the {split} split of {index_csv} is empty")
    spec = get_spec(model)
    augment_seed = seed if augment_seed is None else augment_seed
    if spec.is_segmentation:
        transform = (
            segmentation_augmentation(
                augment_seed, zoom_range, aspect_range, object_dimming, tight_crops
            )
            if augment
            else None
        )
        return SegmentationDataset(
            rows, index_csv.parent, transform, gap_weight, small_object_weight
        )
    transform = lineage_augmentation(augment_seed, resolution_augmentation) if augment else None
    return LineageDataset(rows, index_csv.parent, transform)
