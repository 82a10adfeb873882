"""The working grid: the upload brought to the scale and framing a network was trained at.

A segmentation network learned objects of a band of sizes on frames of one framing (its card's
`input.working_grid`). Every upload is mapped onto a working grid where its objects have those
sizes, whatever the upload's margin, aspect ratio, magnification or orientation:

- the embryo's long axis is laid along x (a transpose when it lies nearer y), as in training;
- the grid's columns and rows are scaled with the training frames' aspect (the networks saw
  frames resized to a square, so their objects are `aspect` times taller than wide);
- the scale comes from a diameter the visitor gives, else the pixel size, else the embryo's
  length, then a second look at the objects found: when their median diameter lies outside
  the trained band the grid is scaled once more to bring it to the band's median.

The grid is padded to a multiple of 32 and large grids run in overlapping tiles blended with
linear ramps, so an object on a tile border stays one object and there are no seams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from devolearn_web.config import LIMITS_BY_NAME
from devolearn_web.embryo import EmbryoRegion
from devolearn_web.errors import BadParameter
from devolearn_web.imaging import MODEL_HIGH_PERCENTILE, MODEL_LOW_PERCENTILE, resize_image

# Tiles and their overlap, in working-grid pixels (multiples of 32).
TILE_SIDE = 512
TILE_OVERLAP = 64
NETWORK_MULTIPLE = 32
# A larger working grid costs seconds per request on two cores: the scale is lowered to fit.
# Read once per process, as the app's config reads it, because every pipeline reaches the grid.
MAX_WORKING_PIXELS = LIMITS_BY_NAME["MAX_WORKING_PIXELS"].read()
# Smaller than this the network sees nothing; the grid is never scaled below it.
MIN_WORKING_SIDE = 32
# The smallest canvas the network sees (its training frames were 256 on a side).
MIN_CANVAS_SIDE = 256
# A second look brings objects this far inside the trained band (a factor on its edge).
BAND_INSET = 1.25
# The network runs on a window around the embryo framed as its training frames were, so a wide
# margin or a large field of view around one embryo costs nothing; the embryo spans at most
# this much of the window, so an early embryo whose box holds only its nuclei keeps a margin.
MAX_WINDOW_FILL = 0.7
# Percentiles are taken on at most this many pixels (a regular subsample of a larger region).
STATISTICS_SAMPLE = 1_000_000


@dataclass(frozen=True)
class ScaleRequest:
    """What the visitor says about the scale: an object diameter or a pixel size (or neither)."""

    diameter: float | None = None  # typical object diameter, in upload pixels
    pixel_size_um: float | None = None  # micrometres per upload pixel


AUTOMATIC_SCALE = ScaleRequest()


@dataclass(frozen=True)
class GridCard:
    """A segmentation model's training scale, from its card's `input.working_grid`."""

    aspect: float  # rows per column of the training frames' squash (1 = square pixels)
    embryo_length: float  # the embryo's long axis in training, working-grid columns
    diameter_median: float  # object diameter in working-grid pixels (sqrt(4 area / pi))
    diameter_low: float
    diameter_high: float
    um_per_px: float  # micrometres per working-grid pixel (geometric mean over x and y)

    @staticmethod
    def of(card: Mapping) -> GridCard:
        """The grid of a card's JSON (a dict or a model_cards.ModelCard)."""
        return GridCard.from_section(card["input"]["working_grid"])

    @staticmethod
    def from_section(grid: Mapping) -> GridCard:
        """The grid of a card's `input.working_grid` section (checked by model_cards)."""
        diameter = grid["object_diameter_px"]
        return GridCard(
            aspect=float(grid["aspect"]),
            embryo_length=float(grid["embryo_length_px"]),
            diameter_median=float(diameter["median"]),
            diameter_low=float(diameter["range"][0]),
            diameter_high=float(diameter["range"][1]),
            um_per_px=float(grid["um_per_px"]),
        )


@dataclass(frozen=True)
class WorkingGrid:
    """How an upload maps onto the working grid, and the contrast stretch it gets there."""

    transpose: bool  # the upload is transposed first (its embryo lies along y)
    scale_x: float  # working columns per upload column (after the transpose)
    scale_y: float  # working rows per upload row (after the transpose)
    source: str  # where the scale came from: diameter, pixel size, embryo, frame
    low: float  # the contrast stretch: this value -> 0
    high: float  # and this one -> 1

    @property
    def scale(self) -> float:
        """Working pixels per upload pixel (geometric mean over x and y)."""
        return math.sqrt(self.scale_x * self.scale_y)

    def rescaled(self, factor: float, source: str) -> WorkingGrid:
        return WorkingGrid(
            self.transpose,
            self.scale_x * factor,
            self.scale_y * factor,
            source,
            self.low,
            self.high,
        )

    def limited_to(self, shape: tuple[int, int]) -> WorkingGrid:
        """The grid, scaled down where the working image of `shape` would pass the limit."""
        height, width = shape
        pixels = height * self.scale_y * width * self.scale_x
        if pixels <= MAX_WORKING_PIXELS:
            return self
        return self.rescaled(math.sqrt(MAX_WORKING_PIXELS / pixels), self.source + ", limited")


def initial_grid(
    pixels: np.ndarray,
    grid_card: GridCard,
    request: ScaleRequest,
    embryo: EmbryoRegion | None,
) -> WorkingGrid:
    """The first working grid for a float32 HxW upload: from the request, else the embryo."""
    # Without an embryo found the frame's long side is taken for its long axis (a tight crop).
    transpose = embryo.lies_vertical if embryo is not None else pixels.shape[0] > pixels.shape[1]
    height, width = pixels.shape[::-1] if transpose else pixels.shape
    low, high = contrast_range(pixels, embryo)
    if request.diameter is not None:
        scale, source = grid_card.diameter_median / request.diameter, "diameter"
    elif request.pixel_size_um is not None:
        scale, source = request.pixel_size_um / grid_card.um_per_px, "pixel size"
    elif embryo is not None:
        columns = grid_card.embryo_length / embryo.major
        scale, source = columns * math.sqrt(grid_card.aspect), "embryo"
    else:
        # Nothing to go by: the frame gets the training frame's area, with the trained aspect
        # (squashed to a square, a tight crop's objects were stretched into stripes).
        scale, source = MIN_CANVAS_SIDE / math.sqrt(height * width), "frame"
    root = math.sqrt(grid_card.aspect)
    grid = WorkingGrid(transpose, scale / root, scale * root, source, low, high)
    return grid.limited_to((height, width))


def refined_grid(
    grid: WorkingGrid, median_diameter: float | None, grid_card: GridCard, shape: tuple[int, int]
) -> WorkingGrid | None:
    """A second grid when the objects found (median diameter, working pixels) are outside the
    trained band, bringing them just inside it; None when the first grid stands.

    Just inside, not to the band's median: a late embryo's small nuclei were small in training
    too, and blowing them up to a young embryo's size splits them (29 nuclei read 32)."""
    if median_diameter is None or grid.source in ("diameter", "pixel size"):
        return None
    low = grid_card.diameter_low * BAND_INSET
    high = grid_card.diameter_high / BAND_INSET
    if grid_card.diameter_low <= median_diameter <= grid_card.diameter_high:
        return None
    factor = min(max(median_diameter, low), high) / median_diameter
    return grid.rescaled(factor, grid.source + " and object size").limited_to(shape)


def contrast_range(pixels: np.ndarray, embryo: EmbryoRegion | None) -> tuple[float, float]:
    """The contrast stretch (low, high) of an upload, measured in the embryo's box when found.

    Measured in the embryo's box, so a margin added or cropped away (which changes the share
    of background pixels) does not change how bright the nuclei look; the box's corners
    outside the embryo still give the dark level."""
    region = pixels
    if embryo is not None:
        top, left, bottom, right = embryo.box
        region = pixels[top:bottom, left:right]
    step = max(1, int(math.ceil(math.sqrt(region.size / STATISTICS_SAMPLE))))
    sample = region[::step, ::step]
    low, high = np.percentile(sample, [MODEL_LOW_PERCENTILE, MODEL_HIGH_PERCENTILE])
    if high - low < 1e-6:
        high = float(sample.max())
    return float(low), float(high)


def working_shape(grid: WorkingGrid, shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the working image for an upload of `shape` (before any transpose)."""
    height, width = shape[::-1] if grid.transpose else shape
    return (
        max(MIN_WORKING_SIDE, round(height * grid.scale_y)),
        max(MIN_WORKING_SIDE, round(width * grid.scale_x)),
    )


def embryo_window(
    region: EmbryoRegion | None, shape: tuple[int, int], fill: float
) -> tuple[slice, slice]:
    """The part of an upload of `shape` the network needs: the embryo's box with the margin
    that makes its longer side `fill` of the window's (as in the training frames), within the
    frame (all of it without an embryo). Never past the frame: the membrane network reads a
    slice differently with a dark margin its training frames did not have."""
    height, width = shape
    if region is None:
        return slice(0, height), slice(0, width)
    top, left, bottom, right = region.box
    margin = round(max(bottom - top, right - left) * (1.0 / fill - 1.0) / 2.0)
    return (
        slice(max(0, top - margin), min(height, bottom + margin)),
        slice(max(0, left - margin), min(width, right + margin)),
    )


def training_fill(grid_card: GridCard, network_side: int) -> float:
    """How much of a training frame's side the embryo's long axis spanned (at most
    MAX_WINDOW_FILL, so an early embryo whose box holds only its nuclei keeps a margin)."""
    return min(MAX_WINDOW_FILL, grid_card.embryo_length / network_side)


def working_image(pixels: np.ndarray, grid: WorkingGrid) -> np.ndarray:
    """The upload (float32 HxW) on the working grid, contrast-stretched to 0..1 (float32)."""
    oriented = pixels.T if grid.transpose else pixels
    resized = resize_image(np.ascontiguousarray(oriented), working_shape(grid, pixels.shape))
    resized = np.array(resized, dtype=np.float32, copy=not resized.flags.writeable)
    span = max(grid.high - grid.low, 1e-6)
    resized -= np.float32(grid.low)
    resized *= np.float32(1.0 / span)
    return np.clip(resized, 0.0, 1.0, out=resized)


def with_context_margin(image: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The working image centred on a dark canvas at least the training frames' side; with
    the margins ((top, bottom), (left, right)).

    Training frames were 256 on a side: a working image a few dozen pixels across (an upload
    cropped tight to an early embryo) gives the network too little room, and a 2-nucleus
    slice cropped tightly read 5 nuclei. Larger images get no margin: the membrane network,
    trained on frames the embryo nearly fills, reads a real slice differently with one."""
    margins = tuple(_margins(side) for side in image.shape)
    return np.pad(image, margins, mode="constant"), margins


def _margins(side: int) -> tuple[int, int]:
    extra = max(0, MIN_CANVAS_SIDE - side)
    return extra // 2, extra - extra // 2


def to_upload_orientation(array: np.ndarray, grid: WorkingGrid) -> np.ndarray:
    """A working-grid array turned back to the upload's orientation (undo the transpose)."""
    return np.ascontiguousarray(array.T) if grid.transpose else array


def run_tiled(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int = TILE_SIDE,
    overlap: int = TILE_OVERLAP,
    between_tiles: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """A network's map (float32 HxW) of a working image, in overlapping tiles when it is large.

    `run` takes a float32 (h, w) array whose sides are multiples of 32 and returns a map of
    the same shape. Tiles are blended with weights that ramp linearly across the overlap, so
    the map is continuous across tile borders."""
    height, width = image.shape
    if height <= tile and width <= tile:
        return run(_padded(image, _round_up(height), _round_up(width)))[:height, :width]
    starts_y = _tile_starts(height, tile, overlap)
    starts_x = _tile_starts(width, tile, overlap)
    total = np.zeros((height, width), dtype=np.float32)
    weights = np.zeros((height, width), dtype=np.float32)
    for top in starts_y:
        for left in starts_x:
            between_tiles()
            piece = image[top : top + tile, left : left + tile]
            rows, cols = piece.shape
            out = run(_padded(piece, _round_up(rows), _round_up(cols)))[:rows, :cols]
            ramp = np.outer(
                _ramp(rows, overlap, top > 0, top + rows < height),
                _ramp(cols, overlap, left > 0, left + cols < width),
            )
            total[top : top + rows, left : left + cols] += out * ramp
            weights[top : top + rows, left : left + cols] += ramp
    return total / np.maximum(weights, np.float32(1e-6))


def _round_up(size: int) -> int:
    return -(-size // NETWORK_MULTIPLE) * NETWORK_MULTIPLE


def _padded(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image padded at the bottom and right with 0 (the stretched background)."""
    if image.shape == (height, width):
        return np.ascontiguousarray(image)
    padded = np.zeros((height, width), dtype=np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    return padded


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering 0..size with at least `overlap` shared between neighbours."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1)
    return [round(index * step) for index in range(count)]


def _ramp(length: int, overlap: int, rises: bool, falls: bool) -> np.ndarray:
    """1D blending weights: a linear rise over `overlap` where a neighbour precedes, a fall
    where one follows, 1 elsewhere (never 0, so every pixel has weight)."""
    weights = np.ones(length, dtype=np.float32)
    edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    span = min(overlap, length)
    if rises:
        weights[:span] = np.minimum(weights[:span], edge[:span])
    if falls:
        weights[length - span :] = np.minimum(weights[length - span :], edge[:span][::-1])
    return weights


def median_diameter(labels: np.ndarray, min_area: int) -> float | None:
    """Median object diameter (sqrt(4 area / pi), pixels) of a label map; None without objects."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas >= min_area]
    if areas.size == 0:
        return None
    return float(np.median(2.0 * np.sqrt(areas / math.pi)))


# Objects this small or large (in upload pixels) cannot be brought to any network's scale.
DIAMETER_RANGE = (2.0, 2000.0)
PIXEL_SIZE_RANGE_UM = (0.001, 100.0)


def parse_scale_request(form) -> ScaleRequest:
    """The `diameter` (pixels) and `pixel_size_um` form fields; blank or absent: automatic."""
    diameter = _positive_number(
        form.get("diameter"),
        DIAMETER_RANGE,
        "The diameter is the typical object (nucleus or cell) diameter in pixels of your image",
    )
    pixel_size = _positive_number(
        form.get("pixel_size_um"),
        PIXEL_SIZE_RANGE_UM,
        "The pixel size is the width of one pixel of your image in micrometres",
    )
    return ScaleRequest(diameter=diameter, pixel_size_um=pixel_size)


def _positive_number(raw: str | None, bounds: tuple[float, float], meaning: str) -> float | None:
    if raw is None or not raw.strip() or raw.strip().lower() == "auto":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not bounds[0] <= value <= bounds[1]:  # also refuses NaN and text
        raise BadParameter(
            f"{meaning}: a number from {bounds[0]:g} to {bounds[1]:g}, or blank for automatic; "
            f"'{raw[:40]}' is not."
        )
    return value
