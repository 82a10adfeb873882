"""Files Fiji, napari and a spreadsheet open, made in memory from results (never stored).

- mask PNG: 8-bit, 255 where probability >= the threshold shown, else 0.
- labels TIFF: 16-bit instance labels (0 = background), one page per frame for a stack, written
  as an ImageJ hyperstack (axes ZYX, TYX or TZYX) so Fiji shows a slice and a frame slider.
- probability TIFF: float32 probability in [0, 1], same layout.
- CSVs: one row per object (position columns, label, x, y, area) or per frame for lineage
  (the same position columns, A, E, M, P, C, D, Z, total).
- ZIP: the TIFFs, a mask PNG per frame and the CSV together.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import tifffile
from PIL import Image

from devolearn_web.errors import BadParameter
from devolearn_web.pipelines import LineageResult, SegmentationResult

LINEAGE_ORDER = ("A", "E", "M", "P", "C", "D", "Z")
# Position keys of a frame (stacks.AXIS_WORDS, movies) and the CSV column naming each.
POSITION_COLUMNS = {"time": "frame", "z": "slice", "seconds": "seconds"}
MAX_LABEL_16_BIT = 65535
SEGMENTATION_FORMATS = ("csv", "tiff", "probability-tiff", "png", "zip")
LINEAGE_FORMATS = ("csv",)
MEDIA_TYPES = {
    "csv": "text/csv",
    "tiff": "image/tiff",
    "probability-tiff": "image/tiff",
    "png": "image/png",
    "zip": "application/zip",
}
FILE_SUFFIXES = {
    "csv": ".csv",
    "tiff": "_labels.tif",
    "probability-tiff": "_probability.tif",
    "png": "_mask.png",
    "zip": ".zip",
}


def check_format(requested: str, task: str, frames: int) -> str:
    """The download format, checked against the model's task and the number of frames."""
    allowed = SEGMENTATION_FORMATS if task == "segmentation" else LINEAGE_FORMATS
    if requested not in allowed:
        raise BadParameter(
            f"The format '{requested[:20]}' is not available for this model; choose one of: "
            f"json, {', '.join(allowed)}."
        )
    if requested == "png" and frames > 1:
        raise BadParameter(
            "A PNG holds one image: for a stack or movie ask for format=zip (a mask PNG per "
            "frame) or format=tiff (the labels as a multi-page 16-bit TIFF)."
        )
    return requested


def mask_png(result: SegmentationResult) -> bytes:
    """8-bit PNG (HxW): 255 where the probability is at least the result's threshold."""
    mask = np.where(result.probability >= result.threshold, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def labels_16bit(labels: np.ndarray) -> np.ndarray:
    """uint16 HxW copy of int labels; BadParameter when there are more than 65535 objects."""
    if labels.size and int(labels.max()) > MAX_LABEL_16_BIT:
        raise BadParameter("There are more than 65535 objects: too many for a 16-bit label image.")
    return labels.astype(np.uint16)


def frames_tiff(
    planes: Iterable[np.ndarray],
    count: int,
    shape: tuple[int, int],
    dtype,
    axis: str,
    slices: int = 1,
) -> bytes:
    """A TIFF of `count` HxW planes: one plain page, or an ImageJ stack along 'Z', 'T' or 'TZ'."""
    buffer = io.BytesIO()
    if count == 1:
        tifffile.imwrite(buffer, next(iter(planes)).astype(dtype), photometric="minisblack")
        return buffer.getvalue()
    # A time-lapse of z-stacks keeps both axes: time points are not slices to Fiji or napari.
    stack_shape = (count // slices, slices) if axis == "TZ" else (count,)
    with tifffile.TiffWriter(buffer, imagej=True) as writer:
        # Planes are written as they come, so a long movie is never held twice in memory.
        writer.write(
            (np.asarray(plane, dtype=dtype) for plane in planes),
            shape=(*stack_shape, *shape),
            dtype=dtype,
            metadata={"axes": f"{axis}YX"},
        )
    return buffer.getvalue()


def labels_tiff(results: Sequence[SegmentationResult], axis: str = "Z", slices: int = 1) -> bytes:
    """16-bit instance labels: one page, or an ImageJ stack (axis 'Z', 'T' or 'TZ')."""
    shape = (results[0].height, results[0].width)
    planes = (labels_16bit(result.labels) for result in results)
    return frames_tiff(planes, len(results), shape, np.uint16, axis, slices)


def probability_tiff(
    results: Sequence[SegmentationResult], axis: str = "Z", slices: int = 1
) -> bytes:
    """float32 probability maps in [0, 1]: one page, or an ImageJ stack."""
    shape = (results[0].height, results[0].width)
    planes = (result.probability.astype(np.float32) for result in results)
    return frames_tiff(planes, len(results), shape, np.float32, axis, slices)


def position_columns(positions: Sequence[dict]) -> list[str]:
    """The position keys present in every frame, in the order time, z, seconds."""
    if not positions:
        return []
    return [key for key in POSITION_COLUMNS if all(key in position for position in positions)]


def objects_csv(results: Sequence[SegmentationResult], positions: Sequence[dict]) -> str:
    """CSV of every object: [frame][,slice],label,x,y,area (no position columns for one image)."""
    keys = position_columns(positions) if len(results) > 1 else []
    rows = (
        [*(position[key] for key in keys), obj.label, obj.x, obj.y, obj.area]
        for result, position in zip(results, positions, strict=True)
        for obj in result.objects
    )
    header = [POSITION_COLUMNS[key] for key in keys] + ["label", "x", "y", "area"]
    return _csv_text(header, rows)


def z_slices(positions: Sequence[dict]) -> int:
    """How many z-slices the frames' positions hold (1 when none names a slice)."""
    return len({position.get("z") for position in positions}) or 1


def lineage_csv(results: Sequence[LineageResult], positions: Sequence[dict] = ()) -> str:
    """CSV of [frame][,slice][,seconds], A, E, M, P, C, D, Z, total (one row per frame)."""
    # The objects CSV's position columns, so a time x z stack's rows say time point and slice,
    # not the flattened index; one image (or frames without positions) keeps frame from 0.
    keys = position_columns(positions) if len(results) > 1 else []
    rows = (
        [
            *([positions[index][key] for key in keys] or [index]),
            *(result.populations[key] for key in LINEAGE_ORDER),
            result.total,
        ]
        for index, result in enumerate(results)
    )
    header = [POSITION_COLUMNS[key] for key in keys] or ["frame"]
    return _csv_text([*header, *LINEAGE_ORDER, "total"], rows)


def zip_bundle(
    stem: str, results: Sequence[SegmentationResult], positions: Sequence[dict], axis: str = "Z"
) -> bytes:
    """ZIP: labels TIFF, probability TIFF, objects CSV and one mask PNG per frame."""
    buffer = io.BytesIO()
    digits = len(str(max(0, len(results) - 1)))
    slices = z_slices(positions)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        bundle.writestr(f"{stem}_labels.tif", labels_tiff(results, axis, slices))
        bundle.writestr(f"{stem}_probability.tif", probability_tiff(results, axis, slices))
        bundle.writestr(f"{stem}_objects.csv", objects_csv(results, positions))
        for index, result in enumerate(results):
            name = (
                f"{stem}_mask.png"
                if len(results) == 1
                else f"masks/{stem}_mask_{index:0{digits}d}.png"
            )
            bundle.writestr(name, mask_png(result))
    return buffer.getvalue()


def build_download(
    requested: str,
    stem: str,
    results: Sequence[SegmentationResult | LineageResult],
    positions: Sequence[dict],
    axis: str = "Z",
) -> tuple[bytes, str, str]:
    """(file bytes, media type, file name) of one download format for a list of results."""
    if requested == "csv":
        if isinstance(results[0], LineageResult):
            body = lineage_csv(results, positions).encode("utf-8")
        else:
            body = objects_csv(results, positions).encode("utf-8")
    elif requested == "tiff":
        body = labels_tiff(results, axis, z_slices(positions))
    elif requested == "probability-tiff":
        body = probability_tiff(results, axis, z_slices(positions))
    elif requested == "png":
        body = mask_png(results[0])
    else:
        body = zip_bundle(stem, results, positions, axis)
    return body, MEDIA_TYPES[requested], f"{stem}{FILE_SUFFIXES[requested]}"


def safe_stem(filename: str | None, model: str) -> str:
    """A file-name stem safe in a Content-Disposition header: model-name_of_upload."""
    # The same rule as downloadStem in static/js/results.js (tests/browser compare the two):
    # no folder, no last extension, each run of anything but ASCII A-Z a-z 0-9 _ - becomes one
    # "_" (an ASCII quoted filename= the page can read back), at most 80 characters.
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", re.sub(r"\.[^.]+$", "", base))[:80]
    return f"{model}-{cleaned or 'image'}"


def _csv_text(header: list[str], rows: Iterator | Iterable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
