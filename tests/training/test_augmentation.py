"""Augmentations keep masks aligned with images, and noise touches features only."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.training

A = pytest.importorskip("albumentations")


def blobs(side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An image whose bright pixels are exactly the labelled objects (labels > 255)."""
    rows, cols = np.mgrid[:side, :side]
    labels = np.zeros((side, side), dtype=np.int32)
    for number, (row, col, radius) in enumerate([(16, 20, 7), (40, 44, 9), (46, 14, 5)]):
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = 300 + number
    return np.where(labels > 0, 0.9, 0.1).astype(np.float32), labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("seed", range(12))
def test_geometry_moves_mask_with_image(seed):
    from devolearn_web.training.augment import segmentation_geometry

    image, labels = blobs()
    out = A.Compose(segmentation_geometry(), seed=seed)(image=image, mask=labels)
    assert out["mask"].shape == labels.shape
    # Nearest-neighbour warping keeps labels whole: no blended values appear.
    assert set(np.unique(out["mask"])) <= set(np.unique(labels))
    # The image is warped with linear interpolation, so only edge pixels may disagree.
    assert iou(out["image"] > 0.5, out["mask"] > 0) > 0.9


@pytest.mark.parametrize("seed", range(12))
def test_full_segmentation_augmentation_keeps_alignment(seed):
    from devolearn_web.training.augment import segmentation_augmentation

    image, labels = blobs()
    out = segmentation_augmentation(seed)(image=image, mask=labels)
    augmented, mask = out["image"], out["mask"] > 0
    assert augmented.dtype == np.float32
    if mask.any() and (~mask).any():
        # Photometric changes keep objects brighter than background, wherever they moved.
        assert augmented[mask].mean() > augmented[~mask].mean() + 0.2


def test_gaussian_noise_changes_the_image_and_never_the_mask():
    from devolearn_web.training.augment import AddGaussianNoise

    image, labels = blobs()
    out = A.Compose([AddGaussianNoise(std_range=(0.05, 0.05), p=1.0)], seed=0)(
        image=image, mask=labels
    )
    assert np.array_equal(out["mask"], labels)
    difference = out["image"] - image
    assert 0.03 < float(difference.std()) < 0.07
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0


def test_gaussian_noise_rejects_a_bad_range():
    from devolearn_web.training.augment import AddGaussianNoise

    with pytest.raises(ValueError, match="std_range"):
        AddGaussianNoise(std_range=(0.2, 0.1))


@pytest.mark.parametrize("seed", range(8))
def test_lineage_geometry_keeps_every_cell_in_view(seed):
    from scipy import ndimage as ndi

    from devolearn_web.training.augment import lineage_geometry

    # Twelve well-separated cells inside the embryo's outline, as in a resized projection.
    side = 128
    rows, cols = np.mgrid[:side, :side]
    image = np.zeros((side, side), dtype=np.float32)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for angle in angles:
        row, col = 64 + 45 * np.sin(angle), 64 + 52 * np.cos(angle)
        image[(rows - row) ** 2 + (cols - col) ** 2 <= 9] = 1.0
    out = A.Compose(lineage_geometry(), seed=seed)(image=image)["image"]
    _, count = ndi.label(out > 0.5)
    assert count == 12
