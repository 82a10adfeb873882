"""Microscope effects shared by all renderers: texture, noise and conversion to integer pixels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (float32, `shape`) rescaled to zero mean and unit spread."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    spread = float(field.std())
    return field / spread if spread > 0 else field


def poisson_gaussian(
    rng: np.random.Generator, signal: np.ndarray, photons: float, read_noise: float
) -> np.ndarray:
    """Noisy signal (float32): shot noise at `photons` per unit signal plus read noise."""
    expected = np.clip(signal, 0.0, None) * photons
    counts = rng.poisson(expected).astype(np.float32)
    counts += rng.normal(0.0, read_noise, size=signal.shape).astype(np.float32)
    return counts / photons


def to_uint(image: np.ndarray, dtype: type, black: float, white: float) -> np.ndarray:
    """Map [black, white] of a float image linearly onto the full range of an unsigned dtype."""
    top = np.iinfo(dtype).max
    scaled = (image - black) / max(white - black, 1e-9) * top
    return np.clip(np.rint(scaled), 0, top).astype(dtype)


def separate_touching_labels(labels: np.ndarray) -> np.ndarray:
    """Zero one pixel wherever two different labels touch (4-neighbours), so a gap divides them."""
    out = labels.copy()
    for axis in range(labels.ndim):
        ahead = np.roll(labels, -1, axis=axis)
        clash = (labels > 0) & (ahead > 0) & (labels != ahead)
        edge = [slice(None)] * labels.ndim
        edge[axis] = -1
        clash[tuple(edge)] = False  # np.roll wraps around; the last row/column has no neighbour
        out[clash] = 0
    return out


def keep_largest_piece_per_label(labels: np.ndarray) -> np.ndarray:
    """Drop all but the largest 4-connected piece of every label (occlusion can cut one in two)."""
    pieces, count = ndi.label(labels > 0)
    if count == 0:
        return labels
    sizes = np.bincount(pieces.ravel())
    label_of_piece = np.zeros(count + 1, dtype=np.int64)
    label_of_piece[pieces.ravel()] = labels.ravel()
    order = np.lexsort((-sizes[1:], label_of_piece[1:])) + 1  # by label, biggest piece first
    first = np.ones(order.size, dtype=bool)
    first[1:] = label_of_piece[order[1:]] != label_of_piece[order[:-1]]
    keep = np.zeros(count + 1, dtype=bool)
    keep[order[first]] = True
    return np.where(keep[pieces], labels, 0).astype(labels.dtype)


def remove_small_labels(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Zero every label with fewer than min_pixels pixels."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_pixels
    small[0] = False
    return np.where(small[labels], 0, labels).astype(labels.dtype)
