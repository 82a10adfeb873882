"""Training augmentations (albumentations): geometry moves image and mask together."""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np


class AddGaussianNoise(A.ImageOnlyTransform):
    """Add zero-mean Gaussian noise (std drawn from std_range) to float32 [0, 1] images only."""

    # An ImageOnlyTransform: albumentations never passes masks or labels to it.

    def __init__(self, std_range: tuple[float, float] = (0.01, 0.06), p: float = 0.5):
        super().__init__(p=p)
        low, high = std_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"std_range must satisfy 0 <= low <= high <= 1, got {std_range}")
        self.std_range = (float(low), float(high))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        shape = data["image"].shape
        std = self.py_random.uniform(*self.std_range)
        noise = self.random_generator.normal(0.0, std, size=shape).astype(np.float32)
        return {"noise": noise}

    def apply(self, img: np.ndarray, noise: np.ndarray, **params: Any) -> np.ndarray:
        return np.clip(img.astype(np.float32) + noise, 0.0, 1.0)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std_range",)


def photometric_transforms() -> list[A.BasicTransform]:
    """Gamma, brightness/contrast, blur and noise: pixel values change, geometry does not."""
    # Gamma first: it is undefined for the negative values brightness/contrast can produce.
    return [
        A.RandomGamma(gamma_limit=(70, 150), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3, p=0.5),
        A.GaussianBlur(sigma_limit=(0.3, 1.2), p=0.3),
        AddGaussianNoise(std_range=(0.0, 0.06), p=0.5),
    ]


def segmentation_geometry() -> list[A.BasicTransform]:
    """Flips, 90-degree turns and an affine or elastic warp, applied to image and mask alike."""
    warp = A.OneOf(
        [
            A.Affine(
                scale=(0.85, 1.15),
                rotate=(-30, 30),
                translate_percent=(-0.05, 0.05),
                shear=(-8, 8),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=1.0,
            ),
            # Displaces pixels by about 1 px on average, 3 px at most: nuclei stay round.
            A.ElasticTransform(alpha=120, sigma=8, border_mode=cv2.BORDER_CONSTANT, p=1.0),
        ],
        p=0.6,
    )
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0), warp]


def lineage_geometry() -> list[A.BasicTransform]:
    """Flips, 90-degree turns and small rotations that keep the whole embryo in view."""
    # No crops, cut-outs, translations or zoom-ins: any of them could push cells out of view
    # and make the image disagree with its counts.
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        A.Affine(rotate=(-15, 15), scale=(0.9, 1.0), border_mode=cv2.BORDER_CONSTANT, p=0.5),
    ]


def segmentation_augmentation(seed: int | None = None) -> A.Compose:
    """Geometry then photometry for image=float32 HxW in [0, 1] and mask=int label map HxW."""
    # Masks are warped by nearest neighbour, so labels stay whole integers aligned with images.
    return A.Compose(segmentation_geometry() + photometric_transforms(), seed=seed)


def lineage_augmentation(seed: int | None = None) -> A.Compose:
    """Geometry that keeps every cell in view, then photometry: cell counts stay true."""
    return A.Compose(lineage_geometry() + photometric_transforms(), seed=seed)
