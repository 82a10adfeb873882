"""Training augmentations (albumentations): geometry moves image and mask together."""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np
from scipy import ndimage as ndi

# Objects are zoomed by a factor from 1 / ZOOM_RANGE to ZOOM_RANGE (issue 17: real microscopes
# give objects from half to twice the size the working grid aims at, when its estimate is off).
ZOOM_RANGE = 2.0
# Rows may be stretched against columns by up to this factor (anisotropic pixels, squashes).
ASPECT_RANGE = 1.25
# Nuclei of one embryo differ up to tenfold in brightness on real microscopes.
DIMMEST_OBJECT = 0.1


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


class VaryObjectBrightness(A.ImageOnlyTransform):
    """Scale each object's brightness (and its halo's) by its own factor, then re-stretch.

    Needs the mask: a pixel takes the factor of its nearest object, fading back to 1 over about
    that object's radius, so the background far from every object (the camera's own noise)
    keeps its level and no edge appears where two objects' halos meet. The re-stretch puts the
    brightest pixel back near 1, as the app's contrast stretch does, so dim objects stay dim
    relative to the rest."""

    def __init__(self, dimmest: float = DIMMEST_OBJECT, p: float = 0.5):
        super().__init__(p=p)
        if not 0.0 < dimmest <= 1.0:
            raise ValueError(f"dimmest must lie in (0, 1], got {dimmest}")
        self.dimmest = float(dimmest)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        labels = np.asarray(data["mask"])
        count = int(labels.max()) if labels.size else 0
        # Log-uniform factors: as many objects a tenth as bright as half as bright.
        factors = np.ones(count + 1, dtype=np.float32)
        factors[1:] = self.dimmest ** self.random_generator.uniform(0.0, 1.0, size=count)
        return {"labels": labels, "factors": factors}

    def apply(
        self, img: np.ndarray, labels: np.ndarray, factors: np.ndarray, **params: Any
    ) -> np.ndarray:
        objects = labels != 0
        if not objects.any():
            return img
        distance, nearest = ndi.distance_transform_edt(~objects, return_indices=True)
        owner = labels[tuple(nearest)]
        areas = np.bincount(labels.ravel(), minlength=len(factors)).astype(np.float32)
        reach = np.sqrt(np.maximum(areas, 1.0) / np.pi)[owner]
        # Only the object's own light dims: each nearest-object region reaching the frame's
        # edge would otherwise cut the background into brighter and darker wedges.
        halo = np.exp(-0.5 * (distance / reach) ** 2).astype(np.float32)
        gain = 1.0 + (factors[owner] - 1.0) * halo
        gain = cv2.GaussianBlur(gain, (0, 0), 2.0)
        dimmed = img.astype(np.float32) * gain
        top = float(np.percentile(dimmed, 99.8))
        return np.clip(dimmed / max(top, 1e-3), 0.0, 1.0)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("dimmest",)


class AxisBlur(A.ImageOnlyTransform):
    """Blur along rows or columns only, as a scanning or a moving stage smears one axis."""

    def __init__(self, sigma_range: tuple[float, float] = (1.0, 3.0), p: float = 0.5):
        super().__init__(p=p)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def get_params(self) -> dict:
        return {
            "sigma": self.py_random.uniform(*self.sigma_range),
            "along_rows": self.py_random.random() < 0.5,
        }

    def apply(self, img: np.ndarray, sigma: float, along_rows: bool, **params: Any) -> np.ndarray:
        sigma_x, sigma_y = (sigma, 0.3) if along_rows else (0.3, sigma)
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma_range",)


class CropOntoDarkCanvas(A.DualTransform):
    """Keep one box of the view and darken the rest, image and labels alike: an upload
    cropped tight around part of an embryo, as the working grid centres it on its dark canvas."""

    def __init__(self, side_range: tuple[float, float] = (0.3, 0.9), p: float = 0.3):
        super().__init__(p=p)
        low, high = side_range
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"side_range must satisfy 0 < low <= high <= 1, got {side_range}")
        self.side_range = (float(low), float(high))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        height, width = params["shape"][:2]
        rows = max(1, round(height * self.py_random.uniform(*self.side_range)))
        cols = max(1, round(width * self.py_random.uniform(*self.side_range)))
        top = self.py_random.randint(0, height - rows)
        left = self.py_random.randint(0, width - cols)
        return {"box": (top, left, top + rows, left + cols)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return _kept_box(img, box)

    def apply_to_mask(
        self, mask: np.ndarray, box: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        return _kept_box(mask, box)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("side_range",)


def _kept_box(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = box
    kept = np.zeros_like(array)
    kept[top:bottom, left:right] = array[top:bottom, left:right]
    return kept


def microscope_transforms(object_dimming: bool = True) -> list[A.BasicTransform]:
    """What real microscopes do that the simulator's frames do not: uneven objects, smeared
    axes and small images enlarged (the working grid upsamples them). Without
    `object_dimming` the data must bring its uneven objects itself (simulate --uneven-nuclei)."""
    return [
        *([VaryObjectBrightness(p=0.4)] if object_dimming else []),
        AxisBlur(p=0.2),
        A.Downscale(
            scale_range=(0.35, 0.8),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=0.2,
        ),
    ]


def resolution_transforms() -> list[A.BasicTransform]:
    """A view cut from fewer or more pixels than the simulator's frames: a small upload
    enlarged, or a large one shrunk with antialiasing; both soften the pixel noise."""
    return [
        A.OneOf(
            [
                A.Downscale(
                    scale_range=(0.4, 0.9),
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                    p=1.0,
                ),
                A.GaussianBlur(sigma_limit=(0.6, 1.5), p=1.0),
            ],
            p=0.5,
        ),
        AxisBlur(p=0.2),
    ]


def photometric_transforms() -> list[A.BasicTransform]:
    """Gamma, brightness/contrast, blur and noise: pixel values change, geometry does not."""
    # Gamma first: it is undefined for the negative values brightness/contrast can produce.
    return [
        A.RandomGamma(gamma_limit=(70, 150), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3, p=0.5),
        A.GaussianBlur(sigma_limit=(0.3, 1.2), p=0.3),
        AddGaussianNoise(std_range=(0.0, 0.06), p=0.5),
    ]


def zoom(low: float, high: float) -> A.Affine:
    """Objects zoomed by a factor in [low, high] at any angle; zooming out leaves a dark
    margin, as the working grid's canvas has."""
    return A.Affine(
        scale=(low, high),
        keep_ratio=True,
        rotate=(-180, 180),
        translate_percent=(-0.1, 0.1),
        shear=(-8, 8),
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
        p=1.0,
    )


def segmentation_geometry(
    zoom_range: float = ZOOM_RANGE, aspect_range: float = ASPECT_RANGE
) -> list[A.BasicTransform]:
    """Flips, 90-degree turns and a zoom or elastic warp, applied to image and mask alike."""
    warp = A.OneOf(
        [
            # Zooming in and out equally often: the factor is near log-uniform.
            zoom(1.0 / zoom_range, 1.0),
            zoom(1.0, zoom_range),
            # Displaces pixels by about 1 px on average, 3 px at most: nuclei stay round.
            A.ElasticTransform(alpha=120, sigma=8, border_mode=cv2.BORDER_CONSTANT, p=1.0),
        ],
        p=0.8,
    )
    geometry = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0), warp]
    if aspect_range > 1.0:
        stretch = math.sqrt(aspect_range)
        geometry.append(A.Affine(scale={"x": (1 / stretch, stretch), "y": (1.0, 1.0)}, p=0.3))
    return geometry


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


def segmentation_augmentation(
    seed: int | None = None,
    zoom_range: float = ZOOM_RANGE,
    aspect_range: float = ASPECT_RANGE,
    object_dimming: bool = True,
    tight_crops: float = 0.0,
) -> A.Compose:
    """Geometry then photometry for image=float32 HxW in [0, 1] and mask=int label map HxW;
    then, for a `tight_crops` share of views, one box kept on a dark canvas."""
    # Masks are warped by nearest neighbour, so labels stay whole integers aligned with images.
    geometry = segmentation_geometry(zoom_range, aspect_range)
    microscope = microscope_transforms(object_dimming)
    # Last: the app's canvas is exactly dark, whatever noise the upload had.
    framing = [CropOntoDarkCanvas(p=tight_crops)] if tight_crops > 0 else []
    return A.Compose(geometry + microscope + photometric_transforms() + framing, seed=seed)


def lineage_augmentation(seed: int | None = None, resolution: bool = False) -> A.Compose:
    """Geometry that keeps every cell in view, then (with `resolution`) softer views, then
    photometry: cell counts stay true."""
    softening = resolution_transforms() if resolution else []
    return A.Compose(lineage_geometry() + softening + photometric_transforms(), seed=seed)
