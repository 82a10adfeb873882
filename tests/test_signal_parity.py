"""One rule for the signal (devolearn_web.signal): the same pixels give the same model input
whether they come as an image, a stack frame, a movie frame or a training file.

The model input is what every network sees: the signal in 0..1, resized to the model's side and
stretched by normalise_for_model (training.images.network_image). The paths are lossless here
(PNG, TIFF, an animated GIF whose palette holds every colour), so they must agree to float32
rounding (ATOL), except where a decoder converts colour to gray with integer rounding (PIL's
"L" for a GIF frame: up to half an 8-bit step, LUMINANCE_ATOL after the stretch).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from devolearn_web import signal
from devolearn_web.imaging import decode_image, normalise_for_model, resize_image
from devolearn_web.movies import decode_movie
from devolearn_web.stacks import read_tiff_stack
from devolearn_web.training.images import (
    network_image,
    read_gray,
    scale_by_dtype,
    signal_channel,
)

SIDE = 48  # the model's input side for this test (a resize from 60 x 80, as in serving)
ATOL = 1e-5
LUMINANCE_ATOL = 0.005  # measured: 0.0018


def model_input(unit: np.ndarray) -> np.ndarray:
    """What serving feeds a network from a decoded signal image (as training's network_image)."""
    return normalise_for_model(resize_image(np.asarray(unit, dtype=np.float32), (SIDE, SIDE)))


def embryo_rgb(dominant: bool) -> np.ndarray:
    """uint8 60x80x3 with few colours (an exact GIF palette): nuclei in green and speckle in red
    and blue (dominant), or the same pattern in every channel at different levels (not)."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[:60, :80]
    green = np.zeros((60, 80), dtype=np.uint8)
    for x, y, level in [(20, 20, 240), (50, 30, 160), (30, 45, 80)]:
        green[(cols - x) ** 2 + (rows - y) ** 2 < 81] = level
    if dominant:
        red = (rng.random((60, 80)) < 0.5).astype(np.uint8) * 20
        blue = (rng.random((60, 80)) < 0.5).astype(np.uint8) * 16
    else:
        red, blue = green // 2 + 40, green // 4 + 10
    return np.dstack([red, green, blue])


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def gif_bytes(rgb: np.ndarray) -> bytes:
    """An animated GIF (`rgb`, then it upside down: Pillow merges identical frames) whose
    palette holds every colour of `rgb` exactly (lossless)."""
    colours, indices = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 256
    image = Image.fromarray(indices.reshape(rgb.shape[:2]).astype(np.uint8), mode="P")
    image.putpalette(colours.astype(np.uint8).ravel().tolist())
    buffer = io.BytesIO()
    flipped = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    image.save(buffer, format="GIF", save_all=True, append_images=[flipped], optimize=False)
    return buffer.getvalue()


def training_input(path) -> np.ndarray:
    return network_image(read_gray(path), SIDE)


@pytest.mark.parametrize("dominant", [True, False], ids=["green-carries-signal", "luminance"])
def test_colour_pixels_give_one_model_input_by_every_path(tmp_path, dominant):
    rgb = embryo_rgb(dominant)
    image = decode_image(png_bytes(rgb), "embryo.png")
    expected = model_input(image.pixels)

    as_tiff = decode_image(tiff_bytes(rgb, photometric="rgb"), "embryo.tif")
    np.testing.assert_allclose(model_input(as_tiff.pixels), expected, atol=ATOL)

    stack = read_tiff_stack(tiff_bytes(np.stack([rgb, rgb[::-1]]), photometric="rgb"))
    np.testing.assert_allclose(model_input(stack.pixels(0)), expected, atol=ATOL)

    movie = decode_movie(gif_bytes(rgb), max_pixels=10**7)
    tolerance = ATOL if dominant else LUMINANCE_ATOL
    np.testing.assert_allclose(model_input(movie.pixels(0)), expected, atol=tolerance)

    path = tmp_path / "embryo.png"
    path.write_bytes(png_bytes(rgb))
    np.testing.assert_allclose(training_input(path), expected, atol=ATOL)

    if dominant:
        assert any("green channel carries the signal" in note for note in image.notes)
        assert stack.axes["channel"] == 1 and movie.axes["channel"] == 1
    else:
        assert any("luminance" in note for note in image.notes)
        assert movie.axes["channel"] is None


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((0.0, 1.0), id="float-in-0-1-kept"),
        pytest.param((0.1, 0.6), id="float-inside-0-1-kept"),
        pytest.param((-3.0, 40.0), id="float-outside-0-1-own-range"),
    ],
)
def test_float_tiff_gives_one_signal_as_image_stack_frame_and_training_file(tmp_path, values):
    low, high = values
    rng = np.random.default_rng(3)
    plane = (low + (high - low) * rng.random((60, 80))).astype(np.float32)
    plane[0, 0], plane[-1, -1] = low, high
    image = decode_image(tiff_bytes(plane), "float.tif")
    stack = read_tiff_stack(tiff_bytes(np.stack([plane, plane])))
    path = tmp_path / "float.tif"
    path.write_bytes(tiff_bytes(plane))
    training = scale_by_dtype(read_gray(path))

    if 0.0 <= low and high <= 1.0:
        expected = plane  # already the unit signal: kept as it is, by every path
        assert not any("own range" in note for note in image.notes)
    else:
        expected = (plane - low) / (high - low)
        assert any("own range" in note for note in image.notes)
    for signal_image in (image.pixels, stack.pixels(0), training):
        np.testing.assert_allclose(signal_image, expected, atol=1e-6)
    np.testing.assert_allclose(model_input(stack.pixels(0)), model_input(image.pixels), atol=ATOL)
    np.testing.assert_allclose(training_input(path), model_input(image.pixels), atol=ATOL)


def test_unit_scaling_rule():
    assert signal.unit_scaling(np.dtype(np.uint8), 3, 9) == signal.UnitScaling(0.0, 1 / 255, False)
    assert signal.unit_scaling(np.dtype(">u2"), 0, 0).scale == pytest.approx(1 / 65535)
    assert signal.unit_scaling(np.dtype(np.float32), 0.2, 0.7) == signal.UnitScaling(0, 1, False)
    assert signal.unit_scaling(np.dtype(np.float32), -1.0, 3.0) == signal.UnitScaling(
        -1.0, 0.25, True
    )
    assert signal.unit_scaling(np.dtype(np.int32), 0, 1).by_range  # no natural range
    assert signal.unit_scaling(np.dtype(np.float64), 2.0, 2.0).scale == 0.0


def test_dominance_rule():
    assert signal.dominant_channel([1.0, 3.0, 0.5]) == 1
    assert signal.dominant_channel([1.0, 2.9, 0.5]) is None  # leads, but not 3x the next
    assert signal.dominant_channel([0.0, 0.0, 0.0]) is None


# Training reads files with the app's rule: the dominant channel, else luminance (never simply
# the busiest channel, which would pick one of two channels that both carry signal).
def test_training_uses_the_dominant_channel():
    rgb = embryo_rgb(dominant=True)
    np.testing.assert_array_equal(signal_channel(rgb), rgb[..., 1])


def test_training_uses_luminance_when_no_channel_dominates():
    rgb = embryo_rgb(dominant=False)
    gray = signal_channel(rgb)
    expected = (rgb.astype(np.float32) @ signal.LUMINANCE_WEIGHTS) / 255
    np.testing.assert_allclose(gray, expected, atol=1e-6)
    assert gray.dtype == np.float32
    # Kept as it is by the scaling (already 0..1), as the app keeps its luminance.
    np.testing.assert_allclose(scale_by_dtype(gray), expected, atol=1e-6)


def test_training_reads_identical_channels_as_gray():
    gray = embryo_rgb(dominant=True)[..., 1]
    np.testing.assert_array_equal(signal_channel(np.dstack([gray, gray, gray])), gray)


def test_training_keeps_a_channel_asked_for():
    rgb = embryo_rgb(dominant=True)
    np.testing.assert_array_equal(signal_channel(rgb, channel=0), rgb[..., 0])
