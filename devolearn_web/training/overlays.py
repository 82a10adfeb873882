"""Figures of a model's answer on a real sample image, for the docs (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from devolearn_web.segmentation import measure_objects  # noqa: E402


def _labels_at(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels (int HxW at model scale) stretched back to the image's own shape by nearest."""
    stretched = Image.fromarray(labels.astype(np.int32)).resize(
        (shape[1], shape[0]), Image.Resampling.NEAREST
    )
    return np.asarray(stretched, dtype=np.int32)


def save_object_overlay(
    image: np.ndarray, labels: np.ndarray, title: str, path: Path, fill: bool = False
) -> Path:
    """Image (HxW, any range) with object outlines (or tinted interiors) and centroids."""
    if labels.shape != image.shape:
        labels = _labels_at(labels, image.shape)
    figure, axis = plt.subplots(figsize=(image.shape[1] / 80 + 1, image.shape[0] / 80 + 1), dpi=100)
    axis.imshow(image, cmap="gray")
    if fill:
        axis.imshow(np.ma.masked_where(labels == 0, labels % 20), cmap="tab20", alpha=0.45)
    outline = np.ma.masked_where(~find_boundaries(labels, mode="inner"), np.ones(labels.shape))
    axis.imshow(outline, cmap="autumn", alpha=0.9, interpolation="nearest")
    objects = measure_objects(labels)
    axis.plot([o.x for o in objects], [o.y for o in objects], "c+", markersize=5)
    axis.set_title(title)
    axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def save_population_overlay(image: np.ndarray, populations: dict[str, int], path: Path) -> Path:
    """Image (HxW) beside a bar chart of predicted cells per lineage."""
    figure, (image_axis, bar_axis) = plt.subplots(
        1, 2, figsize=(11, 3.6), dpi=100, gridspec_kw={"width_ratios": [1.8, 1]}
    )
    image_axis.imshow(image, cmap="gray")
    image_axis.axis("off")
    total = sum(populations.values())
    image_axis.set_title(f"embryo_sample.png: {total} cells predicted")
    names = list(populations)
    bars = bar_axis.bar(names, [populations[name] for name in names], color="tab:green")
    bar_axis.bar_label(bars)
    bar_axis.set(xlabel="lineage", ylabel="cells", title="Predicted population per lineage")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
