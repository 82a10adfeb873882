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
        # Photometric changes (dimmed objects included) keep objects brighter than background,
        # wherever they moved: the image still follows the mask.
        assert augmented[mask].mean() > augmented[~mask].mean() + 0.05
        assert np.corrcoef(augmented.ravel(), mask.ravel())[0, 1] > 0.3


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


@pytest.mark.parametrize("seed", range(6))
def test_object_brightness_varies_within_tenfold_and_keeps_the_mask(seed):
    from devolearn_web.training.augment import DIMMEST_OBJECT, VaryObjectBrightness

    image, labels = blobs()
    out = A.Compose([VaryObjectBrightness(p=1.0)], seed=seed)(image=image, mask=labels)
    assert np.array_equal(out["mask"], labels)
    means = [float(out["image"][labels == label].mean()) for label in (300, 301, 302)]
    # The brightest object is stretched back to the top, the others keep their own factor.
    assert max(means) > 0.9
    assert min(means) >= 0.9 * DIMMEST_OBJECT * 0.8
    assert max(means) / min(means) > 1.05
    # Each object is dimmed as a whole: its pixels stay alike, no edge is drawn inside it.
    for label in (300, 301, 302):
        inside = out["image"][labels == label]
        assert inside.std() < 0.15 * max(inside.mean(), 0.05) + 0.02


@pytest.mark.parametrize("seed", range(6))
def test_object_dimming_leaves_the_far_background_one_level(seed):
    """A dim nucleus dims its own light, not a wedge of the camera's background to the edge."""
    from scipy import ndimage as ndi

    from devolearn_web.training.augment import VaryObjectBrightness

    rows, cols = np.mgrid[:200, :200]
    labels = np.zeros((200, 200), dtype=np.int32)
    for number, (row, col, radius) in enumerate([(40, 40, 7), (40, 160, 9), (160, 100, 5)]):
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = 300 + number
    image = np.where(labels > 0, 0.9, 0.1).astype(np.float32)
    out = A.Compose([VaryObjectBrightness(p=1.0)], seed=seed)(image=image, mask=labels)["image"]
    distance, nearest = ndi.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[tuple(nearest)]
    far = distance > 40
    levels = [float(out[far & (owner == label)].mean()) for label in (300, 301, 302)]
    means = [float(out[labels == label].mean()) for label in (300, 301, 302)]
    assert max(means) / min(means) > 1.05
    assert max(levels) / min(levels) < 1.02


def test_objects_are_dimmed_one_by_one_only_with_object_dimming():
    """Data simulated with uneven nuclei brings its own dim objects: no second dimming."""
    from devolearn_web.training.augment import segmentation_augmentation

    image, labels = blobs(96)

    def spreads(object_dimming: bool) -> list[float]:
        ratios = []
        for seed in range(40):
            out = segmentation_augmentation(seed, 1.15, 1.0, object_dimming)(
                image=image, mask=labels
            )
            means = [
                float(out["image"][out["mask"] == label].mean())
                for label in (300, 301, 302)
                if (out["mask"] == label).sum() > 20
            ]
            if len(means) >= 2:
                ratios.append(max(means) / max(min(means), 1e-3))
        return ratios

    assert max(spreads(True)) > 2.5
    assert max(spreads(False)) < 1.6


@pytest.mark.parametrize("seed", range(6))
def test_a_tight_crop_keeps_one_box_of_image_and_labels_on_a_dark_canvas(seed):
    from devolearn_web.training.augment import CropOntoDarkCanvas

    image = np.full((100, 140), 0.5, dtype=np.float32)
    labels = np.arange(1, 100 * 140 + 1, dtype=np.int32).reshape(100, 140)
    out = A.Compose([CropOntoDarkCanvas(side_range=(0.3, 0.9), p=1.0)], seed=seed)(
        image=image, mask=labels
    )
    kept = out["image"] > 0
    rows, cols = np.nonzero(kept)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    assert kept[box].all() and kept.sum() == kept[box].size  # one whole box, dark around it
    assert 30 <= kept[box].shape[0] <= 90 and 42 <= kept[box].shape[1] <= 126
    np.testing.assert_array_equal(out["mask"] > 0, kept)
    np.testing.assert_array_equal(out["mask"][box], labels[box])  # labels kept, not moved


def test_tight_crops_darken_a_share_of_views_only_when_asked():
    from devolearn_web.training.augment import segmentation_augmentation

    image, labels = blobs(96)

    def dark_shares(tight_crops: float) -> list[float]:
        shares = []
        for seed in range(30):
            out = segmentation_augmentation(seed, 1.15, 1.0, False, tight_crops)(
                image=image, mask=labels
            )
            shares.append(float((out["image"] == 0).mean()))
        return shares

    assert np.median(dark_shares(1.0)) > 0.3
    assert np.median(dark_shares(0.0)) < 0.1


def test_axis_blur_smears_one_axis_only():
    from devolearn_web.training.augment import AxisBlur

    image = np.zeros((64, 64), dtype=np.float32)
    image[32, 32] = 1.0
    blurred = A.Compose([AxisBlur(sigma_range=(3.0, 3.0), p=1.0)], seed=0)(image=image)["image"]
    spread_rows = float((blurred.sum(axis=1) > 1e-3).sum())
    spread_cols = float((blurred.sum(axis=0) > 1e-3).sum())
    assert max(spread_rows, spread_cols) >= 3 * min(spread_rows, spread_cols)


@pytest.mark.parametrize("seed", range(40))
def test_zoom_covers_half_to_twice_the_object_size(seed):
    from devolearn_web.training.augment import ZOOM_RANGE, zoom

    rows, cols = np.mgrid[:128, :128]
    labels = (((rows - 64) ** 2 + (cols - 64) ** 2) <= 10**2).astype(np.int32)
    image = labels.astype(np.float32)
    low, high = (1 / ZOOM_RANGE, 1.0) if seed % 2 else (1.0, ZOOM_RANGE)
    out = A.Compose([zoom(low, high)], seed=seed)(image=image, mask=labels)
    factor = np.sqrt(out["mask"].sum() / labels.sum())
    assert 0.9 * low <= factor <= 1.1 * high


def test_a_narrow_zoom_range_keeps_objects_near_their_size():
    """--zoom-range 1.15 --aspect-range 1: sizes stay within 15%, where the default reaches 2x."""
    from devolearn_web.training.augment import segmentation_geometry

    rows, cols = np.mgrid[:128, :128]
    labels = (((rows - 64) ** 2 + (cols - 64) ** 2) <= 12**2).astype(np.int32)
    image = labels.astype(np.float32)

    def size_factors(geometry) -> np.ndarray:
        factors = []
        for seed in range(60):
            out = A.Compose(geometry, seed=seed)(image=image, mask=labels)
            factors.append(np.sqrt(out["mask"].sum() / labels.sum()))
        return np.array(factors)

    narrow = size_factors(segmentation_geometry(zoom_range=1.15, aspect_range=1.0))
    wide = size_factors(segmentation_geometry())
    assert narrow.min() >= 0.85 / 1.15 and narrow.max() <= 1.15 * 1.15
    assert wide.min() < 0.7 or wide.max() > 1.5


def test_resolution_augmentation_softens_lineage_views_only_when_asked():
    """A 0.5x or 2x upload gives a softer view than the simulator's frames: the network sees
    many such views only with --resolution-augmentation."""
    from devolearn_web.training.augment import lineage_augmentation

    rows, cols = np.mgrid[:96, :96]
    checks = np.where((rows // 2 + cols // 2) % 2 == 0, 0.9, 0.1).astype(np.float32)

    def texture(image: np.ndarray) -> float:
        # Per unit of contrast, so brightness and contrast changes do not count.
        return float(np.abs(np.diff(image, axis=1)).mean()) / max(float(image.std()), 1e-6)

    def softened_share(resolution: bool) -> float:
        views = [
            lineage_augmentation(seed, resolution)(image=checks)["image"] for seed in range(60)
        ]
        return float(np.mean([texture(view) < 0.5 * texture(checks) for view in views]))

    plain, softened = softened_share(False), softened_share(True)
    assert softened >= plain + 0.2, (plain, softened)
