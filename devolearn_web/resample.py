"""Pillow's antialiased bilinear resize of a 2D image, in bands of rows: Pillow's float32 numbers
(to within one unit in the last place), for bounded memory.

One Pillow call needs the whole input as float32 (4 bytes a pixel, 144 MB for 36 megapixels,
however compact the caller's copy) and returns the whole output. Here only a window of input
rows is widened to float32 at a time, and the output comes in bands a caller may consume (the
upload-size probability map is never held as float32).

Pillow resizes in two passes (Resample.c), each row or column on its own, accumulating in
double and storing float32 in between. Here the horizontal pass is Pillow's own, on a window of
rows, and the vertical pass repeats Pillow's coefficients and its sums term by term in numpy:
a resize along one axis is Pillow's bit for bit. Along both, Pillow sometimes runs the vertical
pass first, and the two orders round the float32 in between differently, by one unit in the
last place at most (tests/test_resample.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

# Input pixels widened to float32 at once (a window of rows): 4 MB.
WINDOW_PIXELS = 1_000_000
BILINEAR_SUPPORT = 1.0


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (rows, cols) = size: `pixels` (any real dtype, HxW, any strides) resized."""
    out = np.empty(size, dtype=np.float32)
    for top, band in resized_bands(pixels, size):
        out[top : top + band.shape[0]] = band
    return out


def resized_bands(
    pixels: np.ndarray, size: tuple[int, int], band_pixels: int = WINDOW_PIXELS
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 band of rows) of `pixels` resized to size = (rows, cols), in order.

    A band holds about `band_pixels` output pixels; the input rows it needs are widened to
    float32 and resized across (Pillow) just for it."""
    in_rows, in_cols = pixels.shape
    out_rows, out_cols = size
    bounds, weights = vertical_coefficients(in_rows, out_rows)
    needs_vertical = out_rows != in_rows
    rows_per_band = _rows_per_band(in_rows, in_cols, out_rows, out_cols, band_pixels)
    for top in range(0, out_rows, rows_per_band):
        bottom = min(out_rows, top + rows_per_band)
        if not needs_vertical:
            yield top, _across(pixels[top:bottom], out_cols)
            continue
        first = int(bounds[top, 0])
        last = int((bounds[top:bottom, 0] + bounds[top:bottom, 1]).max())
        window = _across(pixels[first:last], out_cols)
        yield top, _down(window, bounds[top:bottom, 0] - first, weights[top:bottom])


def vertical_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear coefficients (precompute_coeffs): per output row, (first input row,
    how many) int64 (out, 2), and the weights float64 (out, taps), zero past `how many`."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BILINEAR_SUPPORT * filterscale
    taps = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero; the clip to 0 follows, as in Pillow.
    first = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_size)
    count = last - first
    offsets = np.arange(taps, dtype=np.int64)
    distance = ((first[:, None] + offsets).astype(np.float64) - centre[:, None] + 0.5) * (
        1.0 / filterscale
    )
    weights = np.maximum(1.0 - np.abs(distance), 0.0)
    weights[offsets[None, :] >= count[:, None]] = 0.0
    total = np.zeros(out_size, dtype=np.float64)
    for tap in range(taps):  # summed in Pillow's order: the same double
        total += weights[:, tap]
    np.divide(weights, total[:, None], out=weights, where=total[:, None] != 0.0)
    return np.stack([first, count], axis=1), weights


def _rows_per_band(in_rows: int, in_cols: int, out_rows: int, out_cols: int, pixels: int) -> int:
    """Output rows per band: about `pixels` output pixels, and no more input rows widened at
    once than `pixels` allows (a band of a big shrink reads many input rows)."""
    by_output = pixels // max(1, out_cols)
    by_input = int(pixels / max(1, in_cols) / max(in_rows / out_rows, 1e-9))
    return max(1, min(out_rows, by_output, max(1, by_input)))


def _across(rows: np.ndarray, out_cols: int) -> np.ndarray:
    """Pillow's horizontal pass of some rows (any dtype) as float32, to out_cols columns."""
    widened = np.ascontiguousarray(rows, dtype=np.float32)
    if widened.shape[1] == out_cols:
        return widened
    image = Image.fromarray(widened, mode="F")
    return np.asarray(image.resize((out_cols, widened.shape[0]), Image.Resampling.BILINEAR))


def _down(window: np.ndarray, firsts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pillow's vertical pass for some output rows: window rows weighted, summed in double in
    Pillow's order, stored as float32."""
    total = np.zeros((firsts.size, window.shape[1]), dtype=np.float64)
    last_row = window.shape[0] - 1
    for tap in range(weights.shape[1]):
        # Past a row's own count the weight is 0: the clipped row adds exactly nothing.
        rows = window[np.minimum(firsts + tap, last_row)]
        total += rows.astype(np.float64) * weights[:, tap : tap + 1]
    return total.astype(np.float32)
