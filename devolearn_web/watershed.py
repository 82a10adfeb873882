"""Marker-controlled watershed: scikit-image's own flooding, without importing skimage.morphology.

`skimage.segmentation.watershed` imports `skimage.morphology`, which imports `scipy.spatial` and
`scipy.linalg`: about 130 ms of every cold start, and memory in every worker, for a
function whose work is one call into its compiled flooding loop. This calls that loop the way
`skimage.segmentation.watershed` does for 2D images, connectivity 1, no compactness and no
watershed line, which is all the split needs. scikit-image is pinned in requirements.txt, and
tests/test_watershed.py checks that both give the same labels.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import _watershed_cy


def watershed(image: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels (markers' dtype, HxW): each marker flooded over `image`, lowest values first,
    through 4-connected pixels where `mask` is True; pixels it cannot reach stay 0."""
    if image.ndim != 2 or image.shape != markers.shape or image.shape != mask.shape:
        raise ValueError(
            f"image {image.shape}, markers {markers.shape} and mask {mask.shape} must be "
            "2D arrays of one shape"
        )
    inside = np.asarray(mask, dtype=bool)
    # A one-pixel frame of masked-out pixels keeps the flooding inside the array (the loop does
    # not check bounds), as scikit-image pads it.
    padded_image = np.pad(np.asarray(image, dtype=np.float64), 1)
    padded_mask = np.pad(inside.astype(np.int8), 1)
    output = np.pad(np.asanyarray(markers) * inside, 1)
    width = padded_image.shape[1]
    # The 4 neighbours as offsets in the raveled image, nearest first, as scikit-image orders them.
    neighbours = np.array([-width, -1, 1, width], dtype=np.intp)
    strides = np.array(padded_image.strides, dtype=np.intp) // padded_image.itemsize
    _watershed_cy.watershed_raveled(
        padded_image.ravel(),
        np.flatnonzero(output),
        neighbours,
        padded_mask.ravel(),
        strides,
        0.0,
        output.ravel(),
        False,
    )
    return output[1:-1, 1:-1].copy()
