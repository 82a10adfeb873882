"""The split's watershed gives scikit-image's labels without importing skimage.morphology."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed as skimage_watershed

from devolearn_web.watershed import watershed


def random_case(seed: int, plateaus: bool):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 90)), int(rng.integers(5, 90)))
    image = ndi.gaussian_filter(rng.random(shape), sigma=float(rng.uniform(0.5, 3)))
    if plateaus:  # equal values: the order in which ties are flooded must match too
        image = np.round(image * 8) / 8
    mask = ndi.gaussian_filter(rng.random(shape), 2) > 0.48
    markers, _ = ndi.label(rng.random(shape) > 0.97)
    return image.astype(np.float32), markers.astype(np.int32), mask


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("plateaus", [False, True])
def test_labels_equal_scikit_images(seed, plateaus):
    image, markers, mask = random_case(seed, plateaus)
    expected = skimage_watershed(image, markers, mask=mask)
    labels = watershed(image, markers, mask)
    assert labels.dtype == expected.dtype and labels.shape == expected.shape
    np.testing.assert_array_equal(labels, expected)


def test_markers_outside_the_mask_are_dropped_and_inputs_untouched():
    image = np.zeros((6, 6), np.float32)
    markers = np.zeros((6, 6), np.int32)
    markers[0, 0], markers[3, 3] = 1, 2
    mask = np.zeros((6, 6), bool)
    mask[2:5, 2:5] = True
    before = markers.copy()
    labels = watershed(image, markers, mask)
    assert set(np.unique(labels)) == {0, 2} and (labels[mask] == 2).all()
    np.testing.assert_array_equal(markers, before)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        watershed(np.zeros((4, 4)), np.zeros((4, 5), np.int32), np.ones((4, 4), bool))


def test_the_app_does_not_import_skimage_morphology():
    # The point of this module: about 130 ms less cold start.
    code = (
        "import sys, wsgi; "
        "print(sorted(m for m in ('skimage.morphology', 'scipy.spatial') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
