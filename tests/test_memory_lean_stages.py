"""Upload-size stages hold compact arrays only: decoding, the upload-size probability map and
labels, and the TIFF and PNG files, each measured with tracemalloc (NumPy's and Python's
allocations) on an 8-megapixel upload. Each bound is a few bytes per pixel where the stage used
to take 8 to 24 (full-size float64 and float32 temporaries)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from devolearn_web.downloads import labels_tiff, probability_tiff
from devolearn_web.imaging import COMPACT_SIGNAL_PIXELS, decode_image, encode_gray_png
from devolearn_web.pipelines import SegmentationResult, _upload_size_map

HEIGHT, WIDTH = 2000, 4000  # 8 megapixels: a compact (float16) upload
PIXELS = HEIGHT * WIDTH
BAND_ALLOWANCE = 16_000_000  # bands of a million pixels in flight, a few bytes each


def peak_bytes(work: Callable[[], object]) -> tuple[int, object]:
    """(peak bytes traced while `work` ran, its answer)."""
    tracemalloc.start()
    try:
        answer = work()
        return tracemalloc.get_traced_memory()[1], answer
    finally:
        tracemalloc.stop()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embryo_like() -> np.ndarray:
    """uint8 HxW: bright blobs on a dark, noisy background."""
    rng = np.random.default_rng(0)
    rows, cols = np.ogrid[:HEIGHT, :WIDTH]
    image = rng.integers(0, 30, (HEIGHT, WIDTH), dtype=np.uint8)
    for row, col in rng.integers(100, [HEIGHT - 100, WIDTH - 100], (40, 2)):
        image[(rows - row) ** 2 + (cols - col) ** 2 < 60**2] = 200
    return image


@pytest.mark.parametrize("colour", [False, True], ids=["grayscale", "rgba"])
def test_a_large_upload_decodes_to_float16_without_full_size_copies(embryo_like, colour):
    assert PIXELS > COMPACT_SIGNAL_PIXELS
    if colour:  # the signal in green, as the real sample
        dim = embryo_like // 10
        array = np.dstack([dim, embryo_like, dim, np.full_like(dim, 255)])
    else:
        array = embryo_like
    data = png_bytes(array)
    peak, decoded = peak_bytes(lambda: decode_image(data))
    assert decoded.pixels.dtype == np.float16 and decoded.pixels.shape == (HEIGHT, WIDTH)
    np.testing.assert_allclose(decoded.pixels, embryo_like / 255, atol=1e-3)
    # The float16 signal (2 bytes a pixel) and bands: no float32 or RGBA copy of the whole.
    assert peak < 2 * PIXELS + BAND_ALLOWANCE, f"{peak / PIXELS:.1f} bytes a pixel"


def test_the_upload_size_map_and_labels_are_made_in_bands():
    rng = np.random.default_rng(1)
    grid_map = rng.random((500, 1000)).astype(np.float32)
    small_labels = (rng.random((500, 1000)) > 0.5).astype(np.int32) * 7
    peak, (probability, labels, objects) = peak_bytes(
        lambda: _upload_size_map(grid_map, small_labels, 0.5, HEIGHT, WIDTH)
    )
    # The 8-bit probability (1 byte a pixel) and the labels kept as the grid's and a 1-bit
    # mask, plus bands: the labels' array is made only when a download or a figure reads it.
    assert probability.dtype == np.uint8 and probability.shape == (HEIGHT, WIDTH)
    assert peak < 1.5 * PIXELS + BAND_ALLOWANCE, f"{peak / PIXELS:.1f} bytes a pixel"
    assert [obj.label for obj in objects] == [1]  # label 7 renumbered, as ever
    peak, array = peak_bytes(labels.array)
    assert array.dtype == np.uint16 and array.shape == (HEIGHT, WIDTH)
    assert peak < 2 * PIXELS + BAND_ALLOWANCE
    assert (probability[array > 0] >= 127).all() and array.max() == 1
    assert objects[0].area == int((array == 1).sum())


def segmentation(probability: np.ndarray, labels: np.ndarray) -> SegmentationResult:
    height, width = labels.shape
    return SegmentationResult(
        "nucleus", width, height, 0.5, probability, labels, [], (), {}, b"", None
    )


def test_one_page_tiffs_are_written_without_a_converted_copy(embryo_like):
    result = segmentation(embryo_like, (embryo_like > 100).astype(np.uint16))
    peak, body = peak_bytes(lambda: probability_tiff([result]))
    # The file itself is 4 bytes a pixel; nothing else of that size beside it.
    assert len(body) > 4 * PIXELS and peak < 4.6 * PIXELS + BAND_ALLOWANCE
    with Image.open(io.BytesIO(body)) as image:
        np.testing.assert_array_equal(np.asarray(image), embryo_like / np.float32(255))
    peak, body = peak_bytes(lambda: labels_tiff([result]))
    assert peak < 2.3 * PIXELS + BAND_ALLOWANCE
    with Image.open(io.BytesIO(body)) as image:
        np.testing.assert_array_equal(np.asarray(image), result.labels)


def test_pngs_are_filtered_and_compressed_in_bands(embryo_like):
    peak, png = peak_bytes(lambda: encode_gray_png(embryo_like))
    assert peak < len(png) + BAND_ALLOWANCE  # no (H, W + 1) rows copy, no tobytes() copy
    with Image.open(io.BytesIO(png)) as image:
        np.testing.assert_array_equal(np.asarray(image), embryo_like)
