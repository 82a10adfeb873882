"""ImageJ ROI sets (the .zip Fiji's ROI Manager opens): one polygon per object, from the labels.

- One polygon ROI per object, traced around its pixels (marching squares at half a pixel, so
  the outline runs between the object's pixel centres and its neighbours'), in upload pixels
  and ImageJ's coordinates (a pixel's top-left corner at its integer position, its centre
  half a pixel further), with sub-pixel vertices.
- Named by label: `label_0012`; in a stack prefixed by the ImageJ (1-based) slice and frame
  numbers Fiji's sliders show, `frame_002_slice_003_label_0012`, so names stay unique.
- A stack's ROI carries its position, so Fiji shows each outline on its own plane: the plane's
  1-based index in the labels TIFF (its slice in a z-stack, its frame in a time-lapse), plus
  channel 1, slice and frame for a time-lapse of z-stacks (a two-slider hyperstack).
- An object in several pieces (rare: a label clipped by the threshold at the upload's size) is
  outlined by its largest piece: a ROI Manager polygon is one closed line.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence

import numpy as np
from roifile import ROI_TYPE, ImagejRoi
from scipy import ndimage

from devolearn_web.segmentation import SegmentedObject

# ImageJ's ROI Manager keeps the name of each entry in the zip without ".roi".
ROI_SUFFIX = ".roi"
LABEL_DIGITS = 4
# A larger object is traced on every n-th pixel: tracing copies its box as float64 (8 bytes a
# pixel), and a cell filling a 40-megapixel frame needs no outline finer than a few pixels.
MAX_TRACED_PIXELS = 1_000_000
POSITION_DIGITS = 3


def object_outline(mask: np.ndarray, step: int = 1) -> np.ndarray:
    """float (n, 2) x, y vertices around the largest piece of a boolean HxW mask (sampled every
    `step` pixels of the image), in ImageJ coordinates of the image (pixel (0, 0) spans 0..1)."""
    from skimage.measure import find_contours  # only ROI downloads pay for importing it

    padded = np.pad(mask.view(np.uint8), 1)
    contours = find_contours(padded, 0.5)
    outline = max(contours, key=_enclosed_area)
    if len(outline) > 1 and np.array_equal(outline[0], outline[-1]):
        outline = outline[:-1]  # closed contours repeat their first vertex; a polygon closes itself
    # (row, col) of the padded samples, pixel centres at integers -> ImageJ x, y of the image.
    return np.column_stack([outline[:, 1] - 1, outline[:, 0] - 1]) * step + 0.5


def _enclosed_area(contour: np.ndarray) -> float:
    rows, cols = contour[:, 0], contour[:, 1]
    return abs(float(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))) / 2


def frame_rois(
    labels: np.ndarray,
    objects: Sequence[SegmentedObject],
    prefix: str = "",
    positions: dict[str, int] | None = None,
) -> list[ImagejRoi]:
    """One polygon ROI per object of an int HxW label image; `positions` (1-based 'position',
    and 'z' and 't' in a hyperstack) place them in a stack."""
    boxes = ndimage.find_objects(labels)
    rois = []
    for obj in objects:
        box = boxes[obj.label - 1] if obj.label - 1 < len(boxes) else None
        if box is None:
            continue  # no pixel left for this label: nothing to outline
        rows, cols = box
        pixels = (rows.stop - rows.start) * (cols.stop - cols.start)
        step = max(1, math.ceil(math.sqrt(pixels / MAX_TRACED_PIXELS)))
        outline = object_outline(labels[rows, cols][::step, ::step] == obj.label, step)
        outline += (cols.start, rows.start)
        roi = ImagejRoi.frompoints(outline, name=f"{prefix}label_{obj.label:0{LABEL_DIGITS}d}")
        roi.roitype = ROI_TYPE.POLYGON  # frompoints makes a freehand line; objects are polygons
        if positions:
            roi.position = positions["position"]
            if "z" in positions and "t" in positions:
                # A plain stack reads `position` alone; a hyperstack wants all three.
                roi.c_position, roi.z_position = 1, positions["z"]
                roi.t_position = positions["t"]
        rois.append(roi)
    return rois


def stack_place(index: int, position: dict, frames: int) -> tuple[str, dict[str, int]]:
    """The name prefix and the ImageJ (1-based) positions of frame `index` of a stack."""
    if frames <= 1:
        return "", {}
    place = {"position": index + 1}
    prefix = ""
    if "time" in position:
        place["t"] = int(position["time"]) + 1
        prefix += f"frame_{place['t']:0{POSITION_DIGITS}d}_"
    if "z" in position:
        place["z"] = int(position["z"]) + 1
        prefix += f"slice_{place['z']:0{POSITION_DIGITS}d}_"
    if not prefix:  # frames without named positions: their index is their slice
        prefix = f"slice_{index + 1:0{POSITION_DIGITS}d}_"
    return prefix, place


def roi_set_zip(results: Sequence, positions: Sequence[dict]) -> bytes:
    """An ImageJ ROI set (.zip of .roi files) of every object of segmentation results."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
        for index, (result, position) in enumerate(zip(results, positions, strict=True)):
            prefix, place = stack_place(index, position, len(results))
            for roi in frame_rois(result.labels, result.objects, prefix, place):
                zipped.writestr(roi.name + ROI_SUFFIX, roi.tobytes())
    return buffer.getvalue()
