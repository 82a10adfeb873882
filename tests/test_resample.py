"""Banded resizing (devolearn_web.resample) gives Pillow's numbers, whatever the input's dtype,
strides or the size of the bands."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from devolearn_web import resample
from devolearn_web.imaging import resize_image, resize_in_bands

SHAPES = [
    ((315, 585), (256, 256)),  # shrink both ways (Pillow may run either pass first)
    ((97, 131), (1000, 1700)),  # enlarge both ways, as the upload-size map
    ((600, 300), (500, 100)),
    ((50, 50), (50, 80)),  # one axis only
    ((50, 50), (80, 50)),
    ((7, 3), (1, 1)),
    ((1, 1), (9, 5)),
]


def pillow(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size[::-1], Image.Resampling.BILINEAR))


@pytest.mark.parametrize(("shape", "size"), SHAPES)
def test_banded_resize_gives_pillows_numbers(shape, size):
    pixels = np.random.default_rng(0).random(shape).astype(np.float32)
    expected = pillow(pixels, size)
    # Pillow chooses which pass runs first; the two orders round the float32 in between
    # differently, so both axes agree to one unit in the last place.
    np.testing.assert_allclose(resample.resize(pixels, size), expected, rtol=0, atol=1.2e-7)
    if shape[0] == size[0] or shape[1] == size[1]:
        np.testing.assert_array_equal(resample.resize(pixels, size), expected)


@pytest.mark.parametrize(("shape", "size"), SHAPES)
def test_any_band_size_dtype_or_stride_gives_the_same_answer(shape, size):
    pixels = np.random.default_rng(1).random(shape).astype(np.float32)
    whole = resample.resize(pixels, size)
    in_small_bands = np.empty(size, dtype=np.float32)
    for top, band in resample.resized_bands(pixels, size, band_pixels=50):
        in_small_bands[top : top + band.shape[0]] = band
    np.testing.assert_array_equal(in_small_bands, whole)
    compact = pixels.astype(np.float16)
    np.testing.assert_array_equal(
        resample.resize(compact, size), resample.resize(compact.astype(np.float32), size)
    )
    transposed = np.ascontiguousarray(pixels.T).T  # same values, column-major strides
    np.testing.assert_array_equal(resample.resize(transposed, size), whole)


def test_the_coefficients_are_pillows():
    # Pillow's precompute_coeffs for a shrink by 2.3: seven taps, each row's weights sum to 1.
    bounds, weights = resample.vertical_coefficients(585, 256)
    assert weights.shape == (256, 7)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert bounds[0].tolist() == [0, 3] and bounds[-1, 0] + bounds[-1, 1] == 585


def test_small_float32_images_still_take_pillows_own_resize():
    pixels = np.random.default_rng(2).random((315, 585)).astype(np.float32)
    np.testing.assert_array_equal(resize_image(pixels, (256, 256)), pillow(pixels, (256, 256)))
    [(top, band)] = list(resize_in_bands(pixels, (256, 256)))
    assert top == 0
    np.testing.assert_array_equal(band, pillow(pixels, (256, 256)))
