"""Files Fiji, napari and a spreadsheet open, made in memory from results (never stored).

- mask PNG: 8-bit, 255 where the 8-bit probability is at least the threshold shown (the
  page's slider rule: probability * 255 >= threshold * 255), else 0.
- labels TIFF: 16-bit instance labels (0 = background), one page per frame for a stack, written
  as an ImageJ hyperstack (axes ZYX, TYX or TZYX) so Fiji shows a slice and a frame slider.
- probability TIFF: float32 probability in [0, 1] (the 8-bit map the PNG and the slider use,
  divided by 255), same layout.
- CSVs: one row per object (position columns, label, x, y, area) or per frame for lineage
  (the same position columns, A, E, M, P, C, D, Z, total).
- ROI set: an ImageJ ROI set (.zip of polygon .roi files, one per object, named by label;
  devolearn_web.roi_sets) for Fiji's ROI Manager, each ROI on its own plane in a stack.
- ZIP: the TIFFs, a mask PNG per frame, the CSV and the ROI set together.
- A calibrated upload (its pixel size read from the TIFF) gives TIFFs that carry the same pixel
  size (ImageJ `unit`, `spacing`, resolution tags: results are at the upload's size) and a CSV
  with x, y and area in the unit too; an uncalibrated one gives exactly the files it always did.
- Memory: a one-page TIFF is laid out empty and its pixels filled in a band of rows at a time,
  so a large upload's file is held once, not beside a full-size converted copy of its planes.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import tifffile
from PIL import Image

from devolearn_web.calibration import Calibration, writer_options
from devolearn_web.catalogue import LINEAGE_ORDER
from devolearn_web.errors import BadParameter
from devolearn_web.imaging import CONVERSION_BAND_PIXELS, probability_mask
from devolearn_web.pipelines import LineageResult, SegmentationResult
from devolearn_web.roi_sets import roi_set_zip
from devolearn_web.segmentation import MAX_LABEL_16_BIT, SegmentedObject

# Position keys of a frame (stacks.AXIS_WORDS, movies) and the CSV column naming each.
POSITION_COLUMNS = {"time": "frame", "z": "slice", "seconds": "seconds"}
# Calibrated CSV values keep 6 significant digits: pixel sizes are known to fewer.
CALIBRATED_DIGITS = 6
SEGMENTATION_FORMATS = ("csv", "tiff", "probability-tiff", "png", "roi", "zip")
LINEAGE_FORMATS = ("csv",)
MEDIA_TYPES = {
    "csv": "text/csv",
    "tiff": "image/tiff",
    "probability-tiff": "image/tiff",
    "png": "image/png",
    "roi": "application/zip",
    "zip": "application/zip",
}
FILE_SUFFIXES = {
    "csv": ".csv",
    "tiff": "_labels.tif",
    "probability-tiff": "_probability.tif",
    "png": "_mask.png",
    # Fiji's own name for a ROI set saved from the ROI Manager is RoiSet.zip.
    "roi": "_RoiSet.zip",
    "zip": ".zip",
}


def check_format(requested: str, task: str, frames: int) -> str:
    """The download format, checked against the model's task and the number of frames."""
    allowed = SEGMENTATION_FORMATS if task == "segmentation" else LINEAGE_FORMATS
    if requested == "roi" and task != "segmentation":
        raise BadParameter(
            "A ROI set outlines segmented objects; the lineage model counts cells per lineage "
            "and outlines none. Ask for format=csv (populations) or json."
        )
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
    mask = probability_mask(result.probability, result.threshold).view(np.uint8)
    mask *= 255  # in place: the bool mask's bytes become 0 and 255
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def labels_16bit(labels: np.ndarray) -> np.ndarray:
    """uint16 HxW int labels (no copy when they are uint16 already); BadParameter when there
    are more than 65535 objects."""
    if labels.size and int(labels.max()) > MAX_LABEL_16_BIT:
        raise BadParameter("There are more than 65535 objects: too many for a 16-bit label image.")
    return labels.astype(np.uint16, copy=False)


def probability_float32(probability: np.ndarray) -> np.ndarray:
    """float32 probability in [0, 1] of a map (uint8: the 8-bit map, divided by 255)."""
    if probability.dtype == np.uint8:
        return probability / np.float32(255)
    return np.asarray(probability, dtype=np.float32)


def frames_tiff(
    planes: Iterable[np.ndarray],
    count: int,
    shape: tuple[int, int],
    dtype,
    axis: str,
    slices: int = 1,
    calibration: Calibration | None = None,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> bytes:
    """A TIFF of `count` HxW planes: one plain page, or an ImageJ stack along 'Z', 'T' or 'TZ'.

    `convert` turns rows of a plane into `dtype` (default: a cast). With a calibration, one page
    is an ImageJ TIFF too: Fiji reads a unit only from there."""
    convert = convert or (lambda rows: np.asarray(rows, dtype=dtype))
    if count == 1:
        options = {"photometric": "minisblack"}
        if calibration is not None:
            options = {"imagej": True, **writer_options(calibration, "YX")}
        return _one_page_tiff(next(iter(planes)), dtype, convert, options)
    buffer = io.BytesIO()
    options = writer_options(calibration, axis)
    # A time-lapse of z-stacks keeps both axes: time points are not slices to Fiji or napari.
    stack_shape = (count // slices, slices) if axis == "TZ" else (count,)
    with tifffile.TiffWriter(buffer, imagej=True) as writer:
        # Planes are written as they come, so a long movie is never held twice in memory.
        writer.write(
            (convert(plane) for plane in planes),
            shape=(*stack_shape, *shape),
            dtype=dtype,
            metadata={"axes": f"{axis}YX", **options.pop("metadata", {})},
            **options,
        )
    return buffer.getvalue()


def _one_page_tiff(
    plane: np.ndarray, dtype, convert: Callable[[np.ndarray], np.ndarray], options: dict
) -> bytes:
    """A one-page TIFF of `plane` converted to `dtype`, never holding a converted full copy:
    tifffile lays the file out with empty pixels, which are then filled a band at a time (the
    same bytes as writing the converted plane)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, shape=plane.shape, dtype=dtype, **options)
    buffer.seek(0)
    with tifffile.TiffFile(buffer) as tiff:
        page = tiff.pages[0]
        offset, byteorder = page.dataoffsets[0], tiff.byteorder
        contiguous = page.is_contiguous and page.compression == tifffile.COMPRESSION.NONE
    if not contiguous:  # not how tifffile writes an uncompressed page today; kept honest
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, convert(plane), **options)
        return buffer.getvalue()
    view = buffer.getbuffer()
    try:
        pixels = np.frombuffer(
            view, dtype=np.dtype(dtype).newbyteorder(byteorder), count=plane.size, offset=offset
        ).reshape(plane.shape)
        step = max(1, CONVERSION_BAND_PIXELS // max(1, plane.shape[1]))
        for top in range(0, plane.shape[0], step):
            pixels[top : top + step] = convert(plane[top : top + step])
        del pixels
    finally:
        view.release()
    return buffer.getvalue()  # the buffer's own bytes, not a copy


def labels_tiff(
    results: Sequence[SegmentationResult],
    axis: str = "Z",
    slices: int = 1,
    calibration: Calibration | None = None,
) -> bytes:
    """16-bit instance labels: one page, or an ImageJ stack (axis 'Z', 'T' or 'TZ')."""
    shape = (results[0].height, results[0].width)
    planes = (labels_16bit(result.labels) for result in results)
    return frames_tiff(planes, len(results), shape, np.uint16, axis, slices, calibration)


def probability_tiff(
    results: Sequence[SegmentationResult],
    axis: str = "Z",
    slices: int = 1,
    calibration: Calibration | None = None,
) -> bytes:
    """float32 probability maps in [0, 1]: one page, or an ImageJ stack."""
    shape = (results[0].height, results[0].width)
    planes = (result.probability for result in results)
    return frames_tiff(
        planes, len(results), shape, np.float32, axis, slices, calibration, probability_float32
    )


def position_columns(positions: Sequence[dict]) -> list[str]:
    """The position keys present in every frame, in the order time, z, seconds."""
    if not positions:
        return []
    return [key for key in POSITION_COLUMNS if all(key in position for position in positions)]


def objects_csv(
    results: Sequence[SegmentationResult],
    positions: Sequence[dict],
    calibration: Calibration | None = None,
) -> str:
    """CSV of every object: [frame][,slice],label,x,y,area (no position columns for one image),
    then x_<unit>,y_<unit>[,z_<unit>],area_<unit>2 when the pixel size is known."""
    keys = position_columns(positions) if len(results) > 1 else []
    with_z = calibration is not None and bool(calibration.z_spacing) and "z" in keys
    rows = (
        [
            *(position[key] for key in keys),
            obj.label,
            obj.x,
            obj.y,
            obj.area,
            *calibrated_values(obj, position, calibration, with_z),
        ]
        for result, position in zip(results, positions, strict=True)
        for obj in result.objects
    )
    header = [POSITION_COLUMNS[key] for key in keys] + ["label", "x", "y", "area"]
    return _csv_text(header + calibrated_columns(calibration, with_z), rows)


def calibrated_columns(calibration: Calibration | None, with_z: bool) -> list[str]:
    """x_um, y_um[, z_um], area_um2 (the unit spelt in ASCII: nm, um, mm, cm, m); [] without."""
    if calibration is None:
        return []
    unit = calibration.ascii_unit
    return [f"x_{unit}", f"y_{unit}", *([f"z_{unit}"] if with_z else []), f"area_{unit}2"]


def calibrated_values(
    obj: SegmentedObject, position: dict, calibration: Calibration | None, with_z: bool
) -> list[float]:
    """The object's centroid and area in the calibration's unit (z from its slice)."""
    if calibration is None:
        return []
    # Pixel coordinates times the pixel size, origin at the first pixel's centre, as napari
    # places a scaled image.
    values = [obj.x * calibration.pixel_width, obj.y * calibration.pixel_height]
    if with_z:
        values.append(position["z"] * calibration.z_spacing)
    values.append(obj.area * calibration.pixel_width * calibration.pixel_height)
    return [float(f"{value:.{CALIBRATED_DIGITS}g}") for value in values]


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
    stem: str,
    results: Sequence[SegmentationResult],
    positions: Sequence[dict],
    axis: str = "Z",
    calibration: Calibration | None = None,
) -> bytes:
    """ZIP: labels TIFF, probability TIFF, objects CSV, the ROI set and one mask PNG per
    frame."""
    buffer = io.BytesIO()
    digits = len(str(max(0, len(results) - 1)))
    slices = z_slices(positions)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        bundle.writestr(f"{stem}_labels.tif", labels_tiff(results, axis, slices, calibration))
        bundle.writestr(
            f"{stem}_probability.tif", probability_tiff(results, axis, slices, calibration)
        )
        bundle.writestr(f"{stem}_objects.csv", objects_csv(results, positions, calibration))
        bundle.writestr(f"{stem}{FILE_SUFFIXES['roi']}", roi_set_zip(results, positions))
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
    calibration: Calibration | None = None,
) -> tuple[bytes, str, str]:
    """(file bytes, media type, file name) of one download format for a list of results;
    `calibration` is the upload's pixel size, kept in the TIFFs and the objects CSV."""
    if requested == "csv":
        if isinstance(results[0], LineageResult):
            body = lineage_csv(results, positions).encode("utf-8")
        else:
            body = objects_csv(results, positions, calibration).encode("utf-8")
    elif requested == "tiff":
        body = labels_tiff(results, axis, z_slices(positions), calibration)
    elif requested == "probability-tiff":
        body = probability_tiff(results, axis, z_slices(positions), calibration)
    elif requested == "png":
        body = mask_png(results[0])
    elif requested == "roi":
        body = roi_set_zip(results, positions)
    else:
        body = zip_bundle(stem, results, positions, axis, calibration)
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
