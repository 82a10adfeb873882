"""Find the embryo in an image: where it lies, how long it is and which way it points.

The models were trained on frames that hold one embryo at one framing; locating the embryo lets
every upload be brought to that framing whatever its margin, size or orientation. Pure functions,
numpy in and out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import edt
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from devolearn_web.imaging import resize_image

# The search runs on a copy whose longer side is this many pixels: enough for an outline.
SEARCH_SIDE = 256
# Blur and closing radii as fractions of the copy's longer side: wide enough to join the nuclei
# of one embryo (or the cells of one slice) into one region, narrow enough to keep two apart.
BLUR_FRACTION = 0.015
CLOSING_FRACTION = 0.04
# Under this fraction of the frame, the foreground is a speck, not an embryo.
SMALLEST_FRACTION = 0.005
# A second region at least this large (relative to the largest, and of the frame) is a second
# embryo; smaller ones are parts of the same embryo (the far-apart nuclei of an early one).
SECOND_EMBRYO_FRACTION = 0.3
SECOND_EMBRYO_FRAME_FRACTION = 0.06
# Simulated images of the training framing (seeds 0-2, 6 time points, 2026-12-01): nucleus
# slices 1.00-1.00, projections 1.00-1.11, membrane slices 1.31-5.51 (5th percentile 1.46);
# embryo_sample.png 1.08, seg_sample.jpg 3.24. The boundary lies between the kinds.
OUTLINE_RATIO = 1.2
# A faint region (cytoplasm) this many times the bright area it holds is an embryo of its own:
# a nucleus's blurred glow is faint too, but not this much larger than the nucleus.
FAINT_OVER_BRIGHT = 3.0
# Regions under this fraction of the largest are specks (debris, a polar body), not embryo.
SPECK_FRACTION = 0.02
# Pixel noise alone, blurred by NOISE_BLUR pixels, strays about its own standard deviation from
# its median at most (from 0.68, mostly under 1, on the slices beyond the embryo in 10 simulated
# test stacks; slices the embryo's glow reaches stray further, up to 13); the dimmest slice
# through a nucleus's cap strayed 3.8. Below this there is only noise, which the contrast
# stretch would blow up into "nuclei" (23 in one such slice).
NOISE_BLUR = 2.0
NOISE_ONLY_RISE = 1.5
# Noise fills at least this share of the picture (a drawing's thin edges do not).
NOISY_SHARE = 0.5
# Larger images are binned in whole blocks to at most this side: block means keep noise white.
NOISE_SIDE = 512
NOISE_ONLY = (
    "The image shows nothing that stands out from its own pixel noise (an empty field, or a "
    "slice beyond the embryo): there is no embryo or nucleus in it."
)
# The embryo's long axis spans about this much of the training frames' longer side (median of
# find_embryo's first look on training seeds 10-11: nucleus slices 0.56, lineage projections
# 0.58, membrane slices 0.76); the second look frames every upload's embryo so.
TRAINING_FILL = 0.6


@dataclass(frozen=True)
class EmbryoRegion:
    """Where the embryo lies, in upload pixels: centre, axis lengths, long-axis angle, box."""

    centre_row: float
    centre_col: float
    major: float  # length of the long axis (the fitted ellipse's), pixels
    minor: float  # length of the short axis, pixels
    angle_deg: float  # long axis from the image's x axis, counter-clockwise as seen, -90..90
    box: tuple[int, int, int, int]  # (top, left, bottom, right), bottom and right exclusive
    touches_edge: bool  # the region reaches the frame: the embryo may be cut off

    def to_json(self) -> dict:
        top, left, bottom, right = self.box
        return {
            "x": round(self.centre_col, 1),
            "y": round(self.centre_row, 1),
            "length": round(self.major, 1),
            "width": round(self.minor, 1),
            "angle_deg": round(self.angle_deg, 1),
            "box": {"left": left, "top": top, "right": right, "bottom": bottom},
        }

    @property
    def lies_vertical(self) -> bool:
        """True when the long axis is nearer the image's y axis than its x axis."""
        return abs(self.angle_deg) > 45.0


@dataclass(frozen=True)
class EmbryoSearch:
    """The outcome of looking for one embryo: the region (None when none) and why not."""

    region: EmbryoRegion | None
    regions_found: int
    problem: str | None  # a sentence for the visitor when no single embryo was found
    # Bright area with its holes filled over the bright area: about 1 for solid nuclei, well
    # above 1 for membranes, whose bright outlines enclose dark cells (see OUTLINE_RATIO).
    outline_ratio: float = 1.0
    noise_only: bool = False  # nothing above the pixel noise: no object to find either

    @property
    def shows_outlines(self) -> bool:
        """True when the image looks like membranes (bright outlines), not solid nuclei."""
        return self.outline_ratio >= OUTLINE_RATIO


def find_embryo(pixels: np.ndarray) -> EmbryoSearch:
    """Locate the largest embryo-like foreground region of a float32 HxW image.

    The frame is searched first (how many embryos, roughly where); the embryo is then measured
    again in a view that frames it as the training frames did, so its outline does not depend
    on the margin around it or on how tightly the picture was cropped."""
    if rise_over_noise(pixels) < NOISE_ONLY_RISE:
        return EmbryoSearch(None, 0, NOISE_ONLY, noise_only=True)
    small = _search_copy(pixels)
    search = dataclasses.replace(_search(small, pixels.shape), outline_ratio=outline_ratio(small))
    if search.region is None:
        return search
    view, window, top, left = _training_framed_view(pixels, search.region, float(small.min()))
    second = _search(view, window)
    if second.region is None or second.regions_found != 1:
        return search  # too little left to measure in the view: the frame's outline stands
    return dataclasses.replace(
        search, region=_shifted(second.region, top, left, pixels.shape, search.region)
    )


def rise_over_noise(pixels: np.ndarray) -> float:
    """How far the blurred picture strays from its median at most, in units of its pixel noise
    (inf when there is no noise to measure, or too few pixels)."""
    factor = max(1, min(math.ceil(max(pixels.shape) / NOISE_SIDE), min(pixels.shape) // 2))
    height, width = (side // factor * factor for side in pixels.shape)
    blocks = pixels[:height, :width].reshape(height // factor, factor, width // factor, factor)
    binned = blocks.mean(axis=(1, 3), dtype=np.float32)
    # Noise changes every pixel. A flat canvas around the picture (a margin added to it) holds
    # neither noise nor embryo; the eroded mask stays clear of the canvas's edge.
    live = ndi.binary_erosion(
        ndi.maximum_filter(binned, 3) > ndi.minimum_filter(binned, 3), iterations=2
    )
    if not live.any():
        return math.inf
    rows, cols = np.flatnonzero(live.any(1)), np.flatnonzero(live.any(0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    picture, live = binned[box], live[box]
    if live.sum() < NOISY_SHARE * picture.size:
        return math.inf  # a drawing: flat areas and thin edges, no noise
    noise = float((picture - ndi.gaussian_filter(picture, 1.0))[live].std())
    if noise == 0.0:
        return math.inf  # smooth shading with no noise at all (a drawn, blurred embryo)
    blurred = ndi.gaussian_filter(picture, NOISE_BLUR)
    # Above or below: a bright nucleus on a dark field, or a dark field around a bright one.
    return float(np.abs(blurred - np.median(blurred)).max()) / noise


def _search_copy(pixels: np.ndarray) -> np.ndarray:
    """The image shrunk so its longer side is at most SEARCH_SIDE (float32)."""
    height, width = pixels.shape
    factor = min(1.0, SEARCH_SIDE / max(height, width))
    return resize_image(pixels, (max(8, round(height * factor)), max(8, round(width * factor))))


def _training_framed_view(
    pixels: np.ndarray, region: EmbryoRegion, background: float
) -> tuple[np.ndarray, tuple[int, int], int, int]:
    """A search copy of the upload around the embryo's box, with the margin the training frames
    had and `background` past the upload's edges; the window's shape and top-left in the upload.

    Made at the search copy's size (the window is never held at full resolution)."""
    top, left, bottom, right = region.box
    margin = round(max(bottom - top, right - left) * (1.0 / TRAINING_FILL - 1.0) / 2.0)
    top, left, bottom, right = top - margin, left - margin, bottom + margin, right + margin
    window = (bottom - top, right - left)
    factor = min(1.0, SEARCH_SIDE / max(window))
    view = np.full(
        (max(8, round(window[0] * factor)), max(8, round(window[1] * factor))),
        background,
        dtype=np.float32,
    )
    height, width = pixels.shape
    inside = (max(0, top), max(0, left), min(height, bottom), min(width, right))
    # Where the upload's part of the window lands in the view (rounded to its pixels).
    rows = (round((inside[0] - top) * factor), round((inside[2] - top) * factor))
    cols = (round((inside[1] - left) * factor), round((inside[3] - left) * factor))
    if rows[1] > rows[0] and cols[1] > cols[0]:
        part = pixels[inside[0] : inside[2], inside[1] : inside[3]]
        view[rows[0] : rows[1], cols[0] : cols[1]] = resize_image(
            part, (rows[1] - rows[0], cols[1] - cols[0])
        )
    return view, window, top, left


def _shifted(
    region: EmbryoRegion, top: int, left: int, shape: tuple[int, int], first: EmbryoRegion
) -> EmbryoRegion:
    """A region found in a view whose top-left is (top, left) of an upload of `shape`."""
    box_top, box_left, box_bottom, box_right = region.box
    return dataclasses.replace(
        region,
        centre_row=region.centre_row + top,
        centre_col=region.centre_col + left,
        box=(
            max(0, box_top + top),
            max(0, box_left + left),
            min(shape[0], box_bottom + top),
            min(shape[1], box_right + left),
        ),
        touches_edge=first.touches_edge,
    )


def outline_ratio(small: np.ndarray) -> float:
    """Filled bright area over bright area of a float32 image (lightly blurred, Otsu)."""
    blurred = ndi.gaussian_filter(small, sigma=1.0)
    if float(blurred.max() - blurred.min()) < 1e-6:
        return 1.0
    bright = blurred > threshold_otsu(blurred)
    return float(fill_holes(bright).sum() / max(1, int(bright.sum())))


def _search(small: np.ndarray, shape: tuple[int, int]) -> EmbryoSearch:
    """The embryo in the search copy `small` of an upload of `shape`."""
    height, width = shape
    small_shape = small.shape
    side = max(small_shape)
    blurred = ndi.gaussian_filter(small, sigma=max(1.0, BLUR_FRACTION * side))
    if float(blurred.max() - blurred.min()) < 1e-6:
        return EmbryoSearch(None, 0, "The image is uniform: there is no embryo in it.")
    foreground = blurred > threshold_otsu(blurred)
    radius = max(1, round(CLOSING_FRACTION * side))
    closed = fill_holes(_close(foreground, radius))
    labels, count = ndi.label(closed)
    if count == 0:
        return EmbryoSearch(None, 0, "No bright region was found: there is no embryo to measure.")
    areas = np.bincount(labels.ravel())[1:]
    largest = int(areas.max())
    if largest < SMALLEST_FRACTION * labels.size:
        return EmbryoSearch(None, 0, "The bright region is too small to be an embryo.")
    # Early embryos show a few nuclei far apart, so one embryo may be several regions; only
    # regions of embryo size count as embryos of their own.
    big = areas >= max(SECOND_EMBRYO_FRACTION * largest, SECOND_EMBRYO_FRAME_FRACTION * labels.size)
    embryos = int(big.sum())
    # The embryo is the hull of every region that is not a speck: the nuclei of an early
    # embryo, or the cells of a slice, together.
    kept = np.isin(labels, np.flatnonzero(areas >= SPECK_FRACTION * largest) + 1)
    if embryos <= 1:
        # Two early embryos' few small nuclei look like one embryo's scattered nuclei; each
        # embryo's faint cytoplasm around its own nuclei tells them apart.
        apart = faint_embryos(blurred, kept)
        if apart > 1:
            return EmbryoSearch(
                None,
                apart,
                f"The image seems to hold {apart} embryos, each with its own cytoplasm: crop it "
                "to one embryo, with a margin, and try again.",
            )
    if embryos > 1:
        return EmbryoSearch(
            None,
            embryos,
            f"The image seems to hold {embryos} embryos (or an early embryo cropped close to its "
            f"{embryos} nuclei): crop it to one embryo, with a margin, and try again.",
        )
    hull = filled_convex_hull(kept)
    return EmbryoSearch(_in_upload_pixels(hull, small_shape, (height, width)), 1, None)


def faint_embryos(blurred: np.ndarray, bright: np.ndarray) -> int:
    """How many faint regions of embryo size each hold bright regions (0 when unsure)."""
    dark = blurred[~bright]
    if dark.size == 0:
        return 0  # the bright regions fill the frame: no cytoplasm shows
    # Cytoplasm is far fainter than nuclei and the glow around them: on a log scale it parts
    # from the background within the dark pixels.
    low = float(np.exp(threshold_otsu(np.log(np.maximum(dark, 1e-4)))))
    labels, count = ndi.label(fill_holes(blurred > low))
    holding = labels[bright]
    if count == 0 or (holding == 0).any():
        return 0  # some bright region lies outside every faint one: no cytoplasm to go by
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    held = np.bincount(holding, minlength=count + 1)[1:]
    embryo_sized = areas >= max(
        SECOND_EMBRYO_FRACTION * areas.max(), SECOND_EMBRYO_FRAME_FRACTION * labels.size
    )
    return int((embryo_sized & (held > 0) & (areas >= FAINT_OVER_BRIGHT * held)).sum())


def filled_convex_hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a boolean mask's pixels, filled (bool, same shape).

    Written out (Andrew's monotone chain on the pixel corners) because scikit-image's
    convex_hull_image imports skimage.morphology and scipy.spatial, 130 ms of cold start."""
    occupied = np.flatnonzero(mask.any(axis=1))
    if occupied.size == 0:
        return mask.copy()
    # Only each row's first and last pixel can be a hull vertex. A row's span [first, last + 1)
    # has its outer corners on the boundary lines above and below it; where two rows share a
    # boundary line, only the farther corner on each side can be a vertex.
    first = mask[occupied].argmax(axis=1)
    end = mask.shape[1] - mask[occupied, ::-1].argmax(axis=1)
    lines = np.concatenate([occupied, occupied + 1])
    order = np.argsort(lines, kind="stable")
    lines, lefts, rights = lines[order], np.tile(first, 2)[order], np.tile(end, 2)[order]
    starts = np.flatnonzero(np.r_[True, lines[1:] != lines[:-1]])
    line = lines[starts]
    corners = np.concatenate(
        [
            np.stack([line, np.minimum.reduceat(lefts, starts)], axis=1),
            np.stack([line, np.maximum.reduceat(rights, starts)], axis=1),
        ]
    )
    corners = corners[np.lexsort((corners[:, 1], corners[:, 0]))].astype(np.float64)
    hull = _monotone_chain(corners)
    return _filled_polygon_rows(hull, mask.shape) | mask


def _filled_polygon_rows(hull: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie in a convex polygon (bool `shape`), found row by row.

    Each row's centre line crosses a convex polygon in one span: its ends come from the edges
    the line crosses, so the cost grows with rows x edges, not pixels x edges."""
    if len(hull) < 3:
        return np.zeros(shape, dtype=bool)
    centres = np.arange(shape[0]) + 0.5
    start, end = hull, np.roll(hull, -1, axis=0)
    low, high = np.minimum(start[:, 0], end[:, 0]), np.maximum(start[:, 0], end[:, 0])
    crosses = (centres[:, None] >= low) & (centres[:, None] <= high) & (high > low)
    rise = np.where(high > low, end[:, 0] - start[:, 0], 1.0)
    at = start[:, 1] + (centres[:, None] - start[:, 0]) * (end[:, 1] - start[:, 1]) / rise
    left = np.where(crosses, at, np.inf).min(axis=1)
    right = np.where(crosses, at, -np.inf).max(axis=1)
    # A pixel is in when its centre (col + 0.5) lies within [left, right].
    first = np.ceil(left - 0.5 - 1e-9)
    last = np.floor(right - 0.5 + 1e-9)
    columns = np.arange(shape[1])
    return (columns >= first[:, None]) & (columns <= last[:, None])


def _monotone_chain(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices of 2D points (sorted unique, (n, 2) float), in order."""
    if len(points) < 3:
        return points

    def half(sequence: list) -> list:
        chain: list = []
        for point in sequence:
            x, y = point
            # Pop while the last two points and this one do not turn left (cross product <= 0).
            while len(chain) >= 2:
                (ox, oy), (ax, ay) = chain[-2], chain[-1]
                if (ax - ox) * (y - oy) - (ay - oy) * (x - ox) > 0:
                    break
                chain.pop()
            chain.append(point)
        return chain

    # Python floats: the loop is ten times faster on them than on numpy scalars.
    listed = points.tolist()
    lower, upper = half(listed), half(listed[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing with a disc, on a padded copy so regions at the frame are not eroded.

    Through exact distance transforms (a pixel within `radius` of the mask, then one farther
    than `radius` from the rest): the same disc closing as scipy's, in a fifth of the time."""
    padded = np.pad(mask, radius + 1, mode="constant")
    dilated = edt.edt(~padded, black_border=False, parallel=1) <= radius
    closed = edt.edt(dilated, black_border=False, parallel=1) > radius
    return closed[radius + 1 : -radius - 1, radius + 1 : -radius - 1]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region that does not reach the frame filled in."""
    background, count = ndi.label(~mask)
    if count == 0:
        return mask.copy()
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[edge] = True
    outside[0] = False
    return ~outside[background]


def _in_upload_pixels(
    region: np.ndarray, small_shape: tuple[int, int], shape: tuple[int, int]
) -> EmbryoRegion:
    """A region (bool mask of the search copy) as an ellipse and box in the upload's pixels.

    The ellipse has the region's second moments (axes 4 sqrt(eigenvalue), as scikit-image's
    regionprops, computed here because regionprops imports scipy.spatial)."""
    row_scale = shape[0] / small_shape[0]
    col_scale = shape[1] / small_shape[1]
    # The copy keeps the aspect ratio, so one factor fits both axes for lengths.
    scale = math.sqrt(row_scale * col_scale)
    rows, cols = np.nonzero(region)
    centre_row, centre_col = float(rows.mean()), float(cols.mean())
    covariance = np.cov(np.stack([rows, cols]).astype(np.float64), bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance + np.eye(2) / 12.0)
    d_row, d_col = eigenvectors[:, 1]  # the long axis, (row, col)
    # As seen, rows grow downwards: the angle from x counter-clockwise is atan2(-d_row, d_col).
    angle = math.degrees(math.atan2(-d_row, d_col))
    angle = (angle + 90.0) % 180.0 - 90.0
    top, left = int(rows.min()), int(cols.min())
    bottom, right = int(rows.max()) + 1, int(cols.max()) + 1
    return EmbryoRegion(
        centre_row=(centre_row + 0.5) * row_scale - 0.5,
        centre_col=(centre_col + 0.5) * col_scale - 0.5,
        major=4.0 * math.sqrt(max(eigenvalues[1], 0.0)) * scale,
        minor=4.0 * math.sqrt(max(eigenvalues[0], 0.0)) * scale,
        angle_deg=float(angle),
        box=(
            int(math.floor(top * row_scale)),
            int(math.floor(left * col_scale)),
            min(shape[0], int(math.ceil(bottom * row_scale))),
            min(shape[1], int(math.ceil(right * col_scale))),
        ),
        touches_edge=top == 0 or left == 0 or bottom == small_shape[0] or right == small_shape[1],
    )


# A C. elegans embryo is about 50 x 30 um; a region narrower than this (an early embryo's few
# nuclei in a row) still stands for a whole embryo of that shape.
EMBRYO_WIDTH_TO_LENGTH = 0.6


def embryo_centred_view(
    pixels: np.ndarray,
    region: EmbryoRegion,
    fill: tuple[float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """The embryo cut out, long axis along x, filling `fill` (of width, of height) of a float32
    image of `size` (rows, cols): the framing the lineage network was trained on.

    The box around the embryo is resampled to `size` whatever its aspect, as the training
    frames were; outside the upload the view holds the upload's darkest level."""
    rows_out, cols_out = size
    box_width = region.major / fill[0]
    box_height = max(region.minor, EMBRYO_WIDTH_TO_LENGTH * region.major) / fill[1]
    # Shrink a large upload first (antialiased) so the resampling below does not alias.
    shrink = min(1.0, 2.0 * cols_out / box_width)
    source = pixels
    if shrink < 1.0:
        shape = (max(8, round(pixels.shape[0] * shrink)), max(8, round(pixels.shape[1] * shrink)))
        source = resize_image(pixels, shape)
    row_scale = source.shape[0] / pixels.shape[0]
    col_scale = source.shape[1] / pixels.shape[1]
    angle = math.radians(region.angle_deg)
    along = (np.arange(cols_out, dtype=np.float64) + 0.5) / cols_out * box_width - box_width / 2
    across = (np.arange(rows_out, dtype=np.float64) + 0.5) / rows_out * box_height - box_height / 2
    u, v = np.meshgrid(along, across)
    # The long axis points along (cos a, -sin a) as seen (rows grow downwards).
    cols = region.centre_col + u * math.cos(angle) + v * math.sin(angle)
    rows = region.centre_row - u * math.sin(angle) + v * math.cos(angle)
    coordinates = np.stack([(rows + 0.5) * row_scale - 0.5, (cols + 0.5) * col_scale - 0.5])
    view = ndi.map_coordinates(
        source, coordinates, order=1, mode="constant", cval=float(source.min())
    )
    return view.astype(np.float32)
