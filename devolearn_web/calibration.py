"""A TIFF upload's pixel size (spatial calibration), read from its tags and written back.

Decisions:
- ImageJ metadata names the unit when Fiji wrote the file (`unit=micron`, `unit=um`...); its
  XResolution/YResolution are then pixels per that unit and `spacing` is the z step, as Fiji
  reads them. Without an ImageJ unit, the TIFF ResolutionUnit names it: centimetre (standard),
  millimetre or micrometre (tifffile's extensions), all expressed in µm, the microscope's unit.
- Inches are ignored: a TIFF without a resolution reads as 1 pixel per inch, and image editors
  write 72 or 300 dpi, print settings that are never a microscope's pixel size. So are zero,
  negative and non-finite sizes, sizes outside 1 pm..1 m, and units nobody can measure in
  ("pixel"). An ignored calibration is not mentioned: the upload is treated as uncalibrated.
- Downloads are written as Fiji writes a calibrated TIFF (ImageJ metadata `unit` and `spacing`,
  resolution in pixels per unit, ResolutionUnit none), so Fiji, napari and tifffile read the
  same scale back.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import tifffile

from devolearn_web.tiff_source import tiff_from

# Canonical unit -> (ASCII spelling for file metadata and CSV column names, metres per unit).
UNITS = {
    "nm": ("nm", 1e-9),
    "µm": ("um", 1e-6),
    "mm": ("mm", 1e-3),
    "cm": ("cm", 1e-2),
    "m": ("m", 1.0),
}
UNIT_SPELLINGS = {
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "nanometers": "nm",
    "nanometres": "nm",
    "µm": "µm",
    "\u03bcm": "µm",  # Greek mu, as some software types it
    "\\u00b5m": "µm",  # ImageJ's escaped micro sign, when it reaches us unescaped
    "um": "µm",
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "micrometre": "µm",
    "micrometers": "µm",
    "micrometres": "µm",
    "mm": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
    "millimeters": "mm",
    "millimetres": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "centimetre": "cm",
    "centimeters": "cm",
    "centimetres": "cm",
    "m": "m",
    "meter": "m",
    "metre": "m",
    "meters": "m",
    "metres": "m",
}
# ResolutionUnit values that are lengths, in micrometres per unit.
RESOLUTION_UNIT_MICROMETRES = {
    tifffile.RESUNIT.CENTIMETER: 1e4,
    tifffile.RESUNIT.MILLIMETER: 1e3,
    tifffile.RESUNIT.MICROMETER: 1.0,
}
# A pixel outside this range (metres) is a broken tag, not a microscope.
SMALLEST_PIXEL_METRES = 1e-12
LARGEST_PIXEL_METRES = 1.0
# What parsing tags of a hostile or damaged file can raise (see imaging.PARSER_ERRORS).
TAG_ERRORS = (
    tifffile.TiffFileError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
    struct.error,
)


@dataclass(frozen=True)
class Calibration:
    """A pixel's width and height in `unit` (nm, µm, mm, cm or m), and the z step if known."""

    pixel_width: float
    pixel_height: float
    unit: str
    z_spacing: float | None = None

    @property
    def ascii_unit(self) -> str:
        """The unit as file metadata and CSV column names spell it: um for µm."""
        return UNITS[self.unit][0]

    def without_z(self) -> Calibration:
        """The same pixel size for one plane (no z step)."""
        return Calibration(self.pixel_width, self.pixel_height, self.unit)

    def to_json(self) -> dict:
        """The API's `calibration` field."""
        return {
            "unit": self.unit,
            "pixel_width": self.pixel_width,
            "pixel_height": self.pixel_height,
            "z_spacing": self.z_spacing,
        }

    def note(self) -> str:
        """One sentence for the answer's notes."""
        size = f"{self.pixel_width:g}"
        if self.pixel_height != self.pixel_width:
            size += f" x {self.pixel_height:g}"
        z_step = f", z spacing {self.z_spacing:g} {self.unit}," if self.z_spacing else ""
        return f"Pixel size {size} {self.unit}{z_step} read from the TIFF: the downloads keep it."


def read_tiff_calibration(data: bytes, tiff: tifffile.TiffFile | None = None) -> Calibration | None:
    """The calibration a TIFF's bytes declare, or None (also for a file that cannot be parsed);
    `tiff`: the file already parsed, to read it from."""
    try:
        with tiff_from(data, tiff) as opened:
            return tiff_calibration(opened)
    except TAG_ERRORS:
        return None


def tiff_calibration(tiff: tifffile.TiffFile) -> Calibration | None:
    """The calibration an open TIFF declares on its first page and in its ImageJ metadata."""
    try:
        page = tiff.pages[0]
        tags = page.tags
        if "XResolution" not in tags:
            return None
        x_per_unit = _rational(tags["XResolution"].value)
        y_per_unit = _rational(tags["YResolution"].value) if "YResolution" in tags else x_per_unit
        imagej = tiff.imagej_metadata or {}
        resolution_unit = page.resolutionunit
    except TAG_ERRORS:
        return None
    unit = _canonical_unit(imagej.get("unit"))
    if unit is not None:
        # Fiji's convention: resolution in pixels per its own unit, whatever ResolutionUnit says.
        scale = 1.0
    elif resolution_unit in RESOLUTION_UNIT_MICROMETRES:
        unit, scale = "µm", RESOLUTION_UNIT_MICROMETRES[resolution_unit]
    else:
        return None  # no unit, or inches (see the module docstring)
    width, height = _pixel_size(x_per_unit, scale), _pixel_size(y_per_unit, scale)
    if not (_plausible(width, unit) and _plausible(height, unit)):
        return None
    z_spacing = _number(imagej.get("spacing")) if "spacing" in imagej else None
    return Calibration(width, height, unit, z_spacing if _plausible(z_spacing, unit) else None)


def writer_options(calibration: Calibration | None, axes: str) -> dict:
    """TiffWriter.write arguments (ImageJ mode) that carry the calibration; {} without one."""
    if calibration is None:
        return {}
    metadata = {"unit": calibration.ascii_unit}
    if calibration.z_spacing and "Z" in axes:
        metadata["spacing"] = calibration.z_spacing
    return {
        "resolution": (1.0 / calibration.pixel_width, 1.0 / calibration.pixel_height),
        "resolutionunit": tifffile.RESUNIT.NONE,
        "metadata": metadata,
    }


def _rational(value) -> float:
    """A TIFF RATIONAL (numerator, denominator) or number as a float; NaN when it is not one."""
    if isinstance(value, tuple) and len(value) == 2:
        numerator, denominator = value
        return numerator / denominator if denominator else math.nan
    return _number(value)


def _number(value) -> float:
    try:
        return float(value)
    except TAG_ERRORS:
        return math.nan


def _pixel_size(pixels_per_unit: float, scale: float) -> float:
    """The size of one pixel from a resolution (pixels per unit); NaN for a zero resolution."""
    if not pixels_per_unit or not math.isfinite(pixels_per_unit):
        return math.nan
    return scale / pixels_per_unit


def _canonical_unit(raw) -> str | None:
    """nm, µm, mm, cm or m from an ImageJ unit's many spellings; None for anything else."""
    if not isinstance(raw, str):
        return None
    return UNIT_SPELLINGS.get(raw.strip().lower())


def _plausible(size: float | None, unit: str) -> bool:
    """True for a finite, positive length between 1 pm and 1 m."""
    if size is None or not math.isfinite(size) or size <= 0:
        return False
    return SMALLEST_PIXEL_METRES <= size * UNITS[unit][1] <= LARGEST_PIXEL_METRES
