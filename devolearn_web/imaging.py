"""Decode uploaded bytes (in memory, never on disk) into one float32 signal image, and back to PNG.

Decisions, in the order they are applied:
- The format is sniffed from the magic bytes, never from the file name.
- The pixel count is read from the header and checked BEFORE any pixel is decoded, so a
  decompression bomb costs a few hundred bytes of parsing, not gigabytes of memory.
- Bit depth (devolearn_web.signal, one rule for images, stacks, movies and training): 8-bit is
  divided by 255 and 16-bit by 65535 (never wrapped to 8 bits); float values already in [0, 1]
  are kept; other 32-bit integer and float images have no natural range, so they are scaled by
  their own min..max.
  Dim 16-bit data (a 12-bit camera uses 0..4095) is NOT stretched here: `normalise_for_model`
  does that before the network, and `to_display_png` before showing it, so both see the same
  contrast whatever the bit depth.
- Colour: fluorescence is usually one channel carrying the signal with speckle in the others.
  When one channel clearly varies more than the others it is used alone; otherwise luminance.
  Never the maximum over channels: it adds the speckle of every channel to the signal.
  A channel asked for (0 red, 1 green, 2 blue) replaces this choice; one the image lacks is a 400.
- Alpha is ignored; palettes are looked up; CMYK and other colour spaces go through RGB.
- An EXIF orientation tag (cameras, phones) is applied, so results match what viewers show.
- Multi-page TIFFs and animated GIFs: the first page or frame, with a note saying so.
- Memory: the signal is made a band of rows at a time, never through full-size float64 or
  float32 copies of the upload, and uploads over COMPACT_SIGNAL_PIXELS keep it as float16.
- A TIFF's pixel size (resolution tags, ImageJ unit) is kept as `calibration` for the downloads
  (devolearn_web.calibration); the pixels are never resampled, so it stays true.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tifffile
from PIL import Image, ImageOps

from devolearn_web import resample
from devolearn_web.calibration import Calibration, read_tiff_calibration
from devolearn_web.config import limit_default
from devolearn_web.errors import BadImage, BadParameter, TooLarge, UnsupportedType
from devolearn_web.signal import (  # the one rule for the signal, shared with stacks, movies
    CHANNEL_NAMES,
    LUMINANCE_WEIGHTS,
    channels_identical,
    dominant_channel,
    full_scale,
    unit_scaling,
)
from devolearn_web.signal import sample_step as _sample_step
from devolearn_web.tiff_source import tiff_from

DEFAULT_MAX_PIXELS = limit_default("MAX_IMAGE_PIXELS")  # the app passes its config's value
# Every list of accepted formats (errors, the drop zone, the API description) is made from
# these, so none can promise less or more than the decoders read.
TIFF_BIT_DEPTHS = "8, 16 or 32 bit"
ACCEPTED_FORMATS = (
    f"PNG, JPEG, TIFF ({TIFF_BIT_DEPTHS}, stacks too), BMP or GIF image, "
    "or an MP4, MOV or AVI movie"
)
ACCEPTED_FORMATS_SENTENCE = f"Please upload a {ACCEPTED_FORMATS}."
# Microscope makers' own files, which a biologist is most likely to have: named, with the way
# to a TIFF, rather than called "not an image" (the drop zone says the same from page data).
MICROSCOPE_FORMATS = {
    ".czi": "a Zeiss CZI file",
    ".lif": "a Leica LIF file",
    ".nd2": "a Nikon ND2 file",
    ".oib": "an Olympus OIB file",
    ".oir": "an Olympus OIR file",
    ".vsi": "an Olympus VSI file",
    ".ims": "an Imaris file",
    ".dv": "a DeltaVision file",
}
MICROSCOPE_FORMAT_ADVICE = (
    "which this site cannot read. Open it in Fiji (Bio-Formats) and save it as a TIFF "
    "(File > Save As > Tiff...): the TIFF keeps the stack and the pixel size, and this site "
    "reads it."
)
# Percentiles mapped to 0 and 1 before the network (training uses the same function).
MODEL_LOW_PERCENTILE = 1.0
MODEL_HIGH_PERCENTILE = 99.8
DISPLAY_LOW_PERCENTILE = 0.5
DISPLAY_HIGH_PERCENTILE = 99.5
# Fast PNG compression: data URLs are sent once, and on 2 cores encoding time dominates.
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_FILTER_UP = 2
PNG_GRAY, PNG_PALETTE = 0, 3  # IHDR colour types
# Uploads larger than this keep their signal as float16 instead of float32: 2 bytes a pixel, 11
# significant bits (more than an 8-bit upload has; a 16-bit one keeps 3 significant digits at
# every brightness), and 72 MB instead of 144 MB held through a 36-megapixel request.
COMPACT_SIGNAL_PIXELS = 4_000_000
# Large images are converted, resized, measured and encoded this many pixels at a time (a band
# of rows): each band's temporaries (float64 sums, pixel indices) stay at a few MB.
CONVERSION_BAND_PIXELS = 262_144

# Movies the stack reader cannot open (devolearn_web.movies reads MP4, MOV, AVI) get their own 415.
MOVIE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
# ISO media files (ftyp box) that hold still images rather than movies.
STILL_IMAGE_BRANDS = (b"heic", b"heix", b"mif1", b"avif")
FILENAME_SHOWN_CHARACTERS = 80
EXIF_ORIENTATION = 0x0112


MAGIC_NUMBERS = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)

# What the parsers raise on hostile or damaged files, found by fuzzing them (tests/reliability/
# test_decoder_fuzz.py): besides OSError ("truncated"), PIL raises TypeError("Missing
# dimensions") and tifffile TypeError from arithmetic on corrupt tags.
PARSER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)
PIL_DECODE_ERRORS = PARSER_ERRORS
# tifffile reads these TIFF colour models as plain values; PIL converts the others.
TIFFFILE_PHOTOMETRICS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
# Where imagecodecs is installed, tifffile decodes LZW, Deflate, JPEG... with it, and its codecs
# raise RuntimeError subclasses (ImcdError, DeflateError...) on damaged data.
CODEC_ERRORS = (RuntimeError,)
TIFF_DECODE_ERRORS = (tifffile.TiffFileError, *PARSER_ERRORS, *CODEC_ERRORS)


@dataclass(frozen=True)
class DecodedImage:
    """An upload as the signal the models read: HxW in [0, 1], float32 (float16 past
    COMPACT_SIGNAL_PIXELS: see signal_dtype), plus what was done to it."""

    pixels: np.ndarray
    width: int
    height: int
    mode: str
    notes: tuple[str, ...]
    calibration: Calibration | None = None


def decode_image(
    data: bytes,
    filename: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    channel: int | None = None,
    tiff: tifffile.TiffFile | None = None,
) -> DecodedImage:
    """Decode PNG/JPEG/TIFF/BMP/GIF bytes into an HxW signal image in [0, 1] (float32; float16
    past COMPACT_SIGNAL_PIXELS); `tiff`: a TIFF upload already parsed, read from it."""
    if not data:
        raise BadImage("The file is empty (0 bytes).")
    image_format = sniff_format(data, filename)
    calibration = None
    if image_format == "TIFF":
        pixels, mode, notes, calibration = _decode_tiff(data, max_pixels, channel, tiff)
    else:
        pixels, mode, notes = _decode_with_pil(data, image_format, max_pixels, channel)
    height, width = pixels.shape
    return DecodedImage(pixels, width, height, mode, tuple(notes), calibration)


def signal_dtype(pixel_count: int) -> type[np.floating]:
    """The dtype of a signal image of this many pixels: float32, float16 for large uploads."""
    return np.float16 if pixel_count > COMPACT_SIGNAL_PIXELS else np.float32


@dataclass(frozen=True)
class _Rows:
    """A decoded image (HxW or HxWxC, in its own dtype), read a band of rows at a time."""

    height: int
    width: int
    read: Callable[[int, int], np.ndarray]  # rows top..bottom (exclusive)
    # One colour channel, or the luminance, as rows of their own, giving the colour image's
    # memory back (PIL RGB and RGBA); None where nothing would be saved.
    channel: Callable[[int], _Rows] | None = None
    luminance: Callable[[], _Rows] | None = None

    @staticmethod
    def of_array(array: np.ndarray) -> _Rows:
        return _Rows(array.shape[0], array.shape[1], lambda top, bottom: array[top:bottom])

    @staticmethod
    def of_pil(image: Image.Image) -> _Rows:
        """A PIL image's rows, each band converted as _pil_to_array converts a whole image: the
        image is never copied into numpy whole."""

        def read(top: int, bottom: int) -> np.ndarray:
            return _pil_to_array(image.crop((0, top, image.width, bottom)))[0]

        def one_plane(plane: Image.Image) -> _Rows:
            # PIL holds colour at 4 bytes a pixel (144 MB for 36 MP): keep the one plane used
            # (36 MB) and close the rest before the signal (72 MB more) is made.
            image.close()
            return _Rows.of_pil(plane)

        if image.mode not in ("RGB", "RGBA"):
            return _Rows(image.height, image.width, read)
        return _Rows(
            image.height,
            image.width,
            read,
            channel=lambda index: one_plane(image.getchannel(index)),
            # PIL's own ITU-R 601 luminance (the same weights), rounded to 8 bits: finer than
            # the float16 signal of an upload this large.
            luminance=lambda: one_plane(image.convert("L")),
        )

    def sample(self, step: int) -> np.ndarray:
        """Every step-th pixel of every step-th row (as array[::step, ::step])."""
        return np.stack([self.read(row, row + 1)[0, ::step] for row in range(0, self.height, step)])

    def in_bands(self, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The signal image: convert(band of rows) -> float32 values, one band at a time."""
        out = np.empty((self.height, self.width), dtype=signal_dtype(self.height * self.width))
        step = max(1, CONVERSION_BAND_PIXELS // max(1, self.width))
        for top in range(0, self.height, step):
            bottom = min(self.height, top + step)
            out[top:bottom] = convert(self.read(top, bottom))
        return out


def sniff_format(data: bytes, filename: str | None = None) -> str:
    """The image format named by the magic bytes; UnsupportedType (naming what it looks like)."""
    for magic, image_format in MAGIC_NUMBERS:
        if data.startswith(magic):
            return image_format
    name = f"'{display_filename(filename)}' " if filename else "The file "
    if _looks_like_movie(data, filename):
        raise UnsupportedType(
            f"{name}looks like a movie in a format this site cannot read: save it as MP4, MOV, "
            f"AVI or animated GIF, or save one frame as an image. {ACCEPTED_FORMATS_SENTENCE}"
        )
    suffix = "." + filename.lower().rsplit(".", 1)[-1] if filename and "." in filename else ""
    vendor = MICROSCOPE_FORMATS.get(suffix)
    if vendor:
        raise UnsupportedType(f"{name}is {vendor}, {MICROSCOPE_FORMAT_ADVICE}")
    what = _describe_unsupported(data)
    raise UnsupportedType(
        f"{name}is {what}, not an image this site can read. {ACCEPTED_FORMATS_SENTENCE}"
    )


def display_filename(filename: str) -> str:
    """A visitor's file name made safe to quote: no control characters, at most 80 characters."""
    printable = "".join(
        character if character.isprintable() else "\ufffd" for character in filename
    )
    if len(printable) > FILENAME_SHOWN_CHARACTERS:
        return printable[: FILENAME_SHOWN_CHARACTERS - 1] + "\u2026"
    return printable


def _looks_like_movie(data: bytes, filename: str | None) -> bool:
    """True for MP4/MOV, AVI, Matroska/WebM and MPEG bytes, or any file with a movie extension."""
    if data[4:8] == b"ftyp" and data[8:12] not in STILL_IMAGE_BRANDS:
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return True
    if data.startswith((b"\x1aE\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return True
    return bool(filename) and filename.lower().endswith(MOVIE_EXTENSIONS)


def _describe_unsupported(data: bytes) -> str:
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if b"<svg" in head:
        return "an SVG drawing"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "a web page (HTML)"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp" and data[8:12] in STILL_IMAGE_BRANDS:
        return "a HEIC/AVIF image"
    if data.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "in an unrecognised format"
    return "a text file"


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadImage(f"The image header gives an impossible size ({width} x {height} pixels).")
    if width * height > max_pixels:
        raise TooLarge(
            f"The image is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"this server analyses images up to {max_pixels / 1e6:g} megapixels."
        )


def _decode_with_pil(
    data: bytes, image_format: str, max_pixels: int, channel: int | None = None
) -> tuple:
    """The first frame's signal image, its PIL mode, and notes."""
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # PIL's own limit (larger than ours) fired while reading the header.
        raise TooLarge(
            f"The image is far larger than the {max_pixels / 1e6:g} megapixels "
            "this server analyses."
        ) from error
    except PIL_DECODE_ERRORS as error:
        raise BadImage(
            f"The file looks like a {image_format} but its header is damaged."
        ) from error
    with image:
        _check_pixel_count(image.width, image.height, max_pixels)
        notes = []
        kind = "page" if image_format == "TIFF" else "frame"
        frames = _count_frames(image)
        if frames is None:
            notes.append(
                f"This {image_format} has several {kind}s and the later ones are damaged: "
                "only the first was analysed."
            )
        elif frames > 1:
            notes.append(
                f"This {image_format} has {frames} {kind}s: only the first was analysed here "
                f"(the web pages, the API and `flask devolearn predict` analyse every {kind})."
            )
        try:
            image.seek(0)
            image.load()
        except PIL_DECODE_ERRORS as error:
            raise BadImage(
                f"The {image_format} file is truncated or damaged, so its pixels cannot be read."
            ) from error
        if image.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
            # Viewers and browsers show the image turned by this tag: the figures must match.
            image = ImageOps.exif_transpose(image)
            notes.append(
                f"The {image_format}'s EXIF orientation tag was applied: it is analysed upright, "
                f"as viewers show it ({image.width} x {image.height} pixels)."
            )
        mode = image.mode
        conversion_note = _conversion_note(mode)
        if conversion_note:
            notes.append(conversion_note)
        if image.width * image.height > COMPACT_SIGNAL_PIXELS:
            # Read in bands: the decoded image (4 bytes a pixel in PIL for colour) is held
            # once, not again as a numpy copy of every channel.
            source = _Rows.of_pil(image)
        else:
            source = _Rows.of_array(_pil_to_array(image)[0])
        pixels, signal_notes = _to_signal(source, mode, channel)
    return pixels, mode, notes + list(signal_notes)


def _count_frames(image: Image.Image) -> int | None:
    """Frames (GIF) or pages (TIFF) in the file; None when a later one is damaged."""
    try:
        return int(getattr(image, "n_frames", 1))
    except PIL_DECODE_ERRORS:
        # Counting walks every frame header; a damaged later frame must not cost the first one.
        return None


def _pil_to_array(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """A numpy array in a mode numpy understands: 1, L, I, F, I;16*, LA, RGB or RGBA."""
    mode = image.mode
    if mode in ("1", "L", "I", "F", "LA", "RGB", "RGBA") or mode.startswith("I;16"):
        return np.asarray(image), None
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB")), None
    if mode == "La":
        return np.asarray(image.convert("LA")), None
    return np.asarray(image.convert("RGB")), _conversion_note(mode)


# PIL modes read as they are, or through RGB(A)/LA without a word (palettes, premultiplied LA).
PLAIN_PIL_MODES = ("1", "L", "I", "F", "LA", "RGB", "RGBA", "P", "PA", "La")


def _conversion_note(mode: str) -> str | None:
    """The note for a PIL mode _pil_to_array converts to RGB (CMYK, YCbCr...), else None."""
    if mode in PLAIN_PIL_MODES or mode.startswith("I;16"):
        return None
    return f"The image was in {mode} colours and was converted to RGB first." if mode else None


def _decode_tiff(
    data: bytes,
    max_pixels: int,
    channel: int | None = None,
    parsed: tifffile.TiffFile | None = None,
) -> tuple:
    """First page of a TIFF with tifffile (16-bit, float, stacks) as a signal image, its mode,
    notes and calibration; PIL for codecs it lacks."""
    try:
        with tiff_from(data, parsed) as tiff:
            calibration = read_tiff_calibration(data, tiff)
            page_count = len(tiff.pages)
            page = tiff.pages[0]
            _check_pixel_count(page.imagewidth, page.imagelength, max_pixels)
            if page.photometric not in TIFFFILE_PHOTOMETRICS:
                # Palette, CMYK, inverted grayscale, YCbCr: PIL knows how to turn them into RGB/L.
                return (*_decode_with_pil(data, "TIFF", max_pixels, channel), calibration)
            try:
                array = page.asarray()
            except ValueError as error:
                if "imagecodecs" not in str(error):
                    raise
                # LZW, JPEG, PackBits...: tifffile needs an extra package, PIL decodes them.
                return (*_decode_with_pil(data, "TIFF", max_pixels, channel), calibration)
            except NotImplementedError as error:
                # Packed bit depths (12-bit cameras) need the imagecodecs package (found by fuzz).
                raise UnsupportedType(
                    f"This TIFF stores {page.bitspersample}-bit packed values, which this server "
                    "cannot read; please save it as an 8- or 16-bit TIFF."
                ) from error
            axes = page.axes
    except TIFF_DECODE_ERRORS as error:
        raise BadImage(
            "The TIFF file is truncated or damaged, so its pixels cannot be read."
        ) from error
    check_pixel_values(array.dtype)
    array = _channels_last(array, axes)
    notes = []
    if page_count > 1:
        notes.append(
            f"Multi-page TIFF: only the first of {page_count} pages was analysed here "
            "(the web pages, the API and `flask devolearn predict` analyse every page)."
        )
    mode = _mode_name(array)
    pixels, signal_notes = _to_signal(_Rows.of_array(array), mode, channel)
    return pixels, mode, notes + list(signal_notes), calibration


def check_pixel_values(dtype: np.dtype) -> None:
    """UnsupportedType unless the pixels are numbers that can be intensities (not complex)."""
    if dtype.kind == "c":
        raise UnsupportedType(
            "This TIFF holds complex numbers (a Fourier transform, say), not light intensities. "
            "Save the intensities (for example the magnitude) as an 8- or 16-bit TIFF instead."
        )
    if dtype.kind not in "biuf":
        raise UnsupportedType(
            f"This TIFF's pixels are not numbers ({dtype}); please save it as an 8- or 16-bit TIFF."
        )


def _channels_last(array: np.ndarray, axes: str) -> np.ndarray:
    """HxW or HxWxC from tifffile's axes (e.g. 'YX', 'YXS', 'SYX')."""
    has_samples = "S" in axes and array.ndim == len(axes)
    if has_samples and axes.index("S") != len(axes) - 1:
        array = np.moveaxis(array, axes.index("S"), -1)
    # Drop leading length-1 axes only: a 1 x N or 1 x 1 image must stay two-dimensional.
    plane_ndim = 3 if has_samples else 2
    while array.ndim > plane_ndim and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (2, 3, 4)):
        return array
    raise BadImage(
        f"This TIFF page has an unusual layout (axes {axes}, shape {array.shape}); "
        "expected one grayscale or colour plane."
    )


def _mode_name(array: np.ndarray) -> str:
    """A PIL-style mode name for an array read by tifffile."""
    channels = {2: "LA", 3: "RGB", 4: "RGBA"}.get(array.shape[-1]) if array.ndim == 3 else None
    if channels:
        return channels if array.dtype == np.uint8 else f"{channels};{array.dtype.itemsize * 8}"
    if array.dtype == bool:
        return "1"
    if array.dtype == np.uint8:
        return "L"
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        return "I;16" if array.dtype.byteorder in ("=", "<", "|") else "I;16B"
    return "F" if array.dtype.kind == "f" else "I"


def _to_signal(
    source: _Rows, mode: str, channel: int | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The signal image in [0, 1] (signal_dtype) from any decoded image, with notes on what was
    done; made a band of rows at a time."""
    first = source.read(0, 1)
    channels = first.shape[-1] if first.ndim == 3 else 1
    if channel is not None:
        count = 3 if channels >= 3 else 1  # alpha is no channel
        if channel >= count:
            names = "0" if count == 1 else "0 red, 1 green, 2 blue"
            raise BadParameter(
                f"Channel {channel} does not exist: this image has {count} channel(s) ({names})."
            )
        if count == 3:
            # Convert only the channel asked for, as the automatic choice below does.
            if source.channel is not None:
                unit, notes = _unit_signal(source.channel(channel), first[..., channel], _same)
            else:
                unit, notes = _unit_signal(source, first[..., channel], lambda b: b[..., channel])
            name = CHANNEL_NAMES[channel]
            note = f"Colour image: the {name} channel ({channel}) was used, as asked."
            return unit, notes + (note,)
    if channels >= 3 and _is_8_or_16_bit(first):
        # Choose the channel on the integers, then convert only it: converting all four
        # channels of an RGBA upload to float32 cost more than the choice itself.
        bright = np.float32(full_scale(first.dtype))
        sample = source.sample(_sample_step(source.height, source.width))[..., :3]
        chosen, note = _select_signal_channel(sample, bright)
        if chosen is None and source.luminance is not None:
            plane = source.luminance()
            signal = plane.in_bands(lambda band: band.astype(np.float32) / bright)
        elif chosen is None:
            signal = source.in_bands(lambda band: (band[..., :3] @ LUMINANCE_WEIGHTS) / bright)
        elif source.channel is not None:
            plane = source.channel(chosen)
            signal = plane.in_bands(lambda band: band.astype(np.float32) / bright)
        else:
            signal = source.in_bands(lambda band: band[..., chosen].astype(np.float32) / bright)
        return signal, (note,)
    if first.ndim == 2:
        return _unit_signal(source, first, _same)
    if channels < 3 and (first.dtype == bool or _is_8_or_16_bit(first)):
        # Gray and alpha: the gray plane (the same values as scaling both and keeping it).
        return _unit_signal(source, first[..., 0], lambda band: band[..., 0])
    # Float or 32-bit colour (rare, and scaled by the range of all its channels together):
    # the whole image at once.
    unit, notes = _to_unit_range(source.read(0, source.height))
    colour = unit[..., :3] if unit.shape[-1] >= 3 else unit[..., :1]
    if colour.shape[-1] == 1:  # LA: gray plus alpha
        signal = colour[..., 0]
        return np.ascontiguousarray(signal, dtype=signal_dtype(signal.size)), notes
    step = _sample_step(colour.shape[0], colour.shape[1])
    chosen, note = _select_signal_channel(colour[::step, ::step], np.float32(1.0))
    signal = colour @ LUMINANCE_WEIGHTS if chosen is None else colour[..., chosen]
    return np.ascontiguousarray(signal, dtype=signal_dtype(signal.size)), notes + (note,)


def _same(band: np.ndarray) -> np.ndarray:
    return band


def _is_8_or_16_bit(array: np.ndarray) -> bool:
    return array.dtype.kind == "u" and array.dtype.itemsize in (1, 2)


def _unit_signal(
    source: _Rows, first: np.ndarray, plane: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One plane of the image (plane(band); `first` is its first row) in [0, 1] by the one rule
    (devolearn_web.signal.unit_scaling): the dtype's range (8/16-bit), float values already in
    [0, 1] as they are, else the plane's own finite min..max (32-bit, float)."""
    if first.dtype == bool:
        return source.in_bands(lambda band: plane(band).astype(np.float32)), ()
    if _is_8_or_16_bit(first):  # any byte order
        bright = np.float32(full_scale(first.dtype))
        return source.in_bands(lambda band: plane(band).astype(np.float32) / bright), ()
    low, high = math.inf, -math.inf
    step = max(1, CONVERSION_BAND_PIXELS // max(1, source.width))
    for top in range(0, source.height, step):
        values = _widened(plane(source.read(top, min(source.height, top + step))))
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if low > high:
        raise BadImage("The image holds no finite values (all NaN or infinite).")
    scaling = unit_scaling(first.dtype, low, high)

    def scaled(band: np.ndarray) -> np.ndarray:
        values = _widened(plane(band))
        values = np.where(np.isfinite(values), values, low)
        return ((values - scaling.offset) * scaling.scale).astype(np.float32)

    if not scaling.by_range:
        return source.in_bands(scaled), ()
    return source.in_bands(scaled), (_own_range_note(first.dtype, low, high),)


def _own_range_note(dtype: np.dtype, low: float, high: float) -> str:
    return (
        f"{dtype.itemsize * 8}-bit {'float' if dtype.kind == 'f' else 'integer'} "
        f"values were scaled from their own range ({low:g} to {high:g}) to 0..1."
    )


def _widened(values: np.ndarray) -> np.ndarray:
    # Widening a signalling NaN warns ("invalid value"); non-finite values are set aside.
    with np.errstate(invalid="ignore"):
        return values.astype(np.float64)


def _to_unit_range(array: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """float32 in [0, 1], every channel, by the one rule (devolearn_web.signal.unit_scaling),
    the range taken over all channels together. Only for the rare float or 32-bit colour image."""
    if array.dtype == bool:
        return array.astype(np.float32), ()
    if _is_8_or_16_bit(array):
        return array.astype(np.float32) / np.float32(full_scale(array.dtype)), ()
    values = _widened(array)
    finite = np.isfinite(values)
    if not finite.any():
        raise BadImage("The image holds no finite values (all NaN or infinite).")
    low, high = float(values[finite].min()), float(values[finite].max())
    values = np.where(finite, values, low)
    scaling = unit_scaling(array.dtype, low, high)
    scaled = ((values - scaling.offset) * scaling.scale).astype(np.float32)
    if not scaling.by_range:
        return scaled, ()
    return scaled, (_own_range_note(array.dtype, low, high),)


def _select_signal_channel(sample: np.ndarray, bright: np.float32) -> tuple[int | None, str]:
    """Which channel of an HxWx3 image carries the signal (None: use luminance), and a note,
    from a sample of it (every _sample_step-th pixel).

    `bright` is the value of a fully bright pixel (255, 65535, or 1 for unit floats); the rule
    itself is devolearn_web.signal's, shared with stacks, movies and training."""
    sample = sample.astype(np.float32) / bright
    if channels_identical(sample):
        return 0, "The colour channels are identical, so the image was read as grayscale."
    chosen = dominant_channel(sample.reshape(-1, 3).std(axis=0))
    if chosen is not None:
        name = CHANNEL_NAMES[chosen]
        return chosen, f"Colour image: the {name} channel carries the signal and was used."
    return None, (
        "Colour image with signal in several channels: its brightness "
        "(luminance, 0.299 R + 0.587 G + 0.114 B) was used."
    )


def normalise_for_model(pixels: np.ndarray) -> np.ndarray:
    """Robust contrast stretch (1st..99.8th percentile -> 0..1) of a float32 HxW image.

    The one per-image normalisation before every network, in serving and in training, so a dim
    16-bit image and a bright 8-bit one look alike to the model.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    low, high = np.percentile(pixels, [MODEL_LOW_PERCENTILE, MODEL_HIGH_PERCENTILE])
    if high - low < 1e-6:
        # Sparse signal (fewer bright pixels than the top percentile): use the maximum instead.
        high = float(pixels.max())
    if high - low < 1e-6:
        return np.zeros_like(pixels, dtype=np.float32)
    stretched = (pixels - np.float32(low)) / np.float32(high - low)
    return np.clip(stretched, 0.0, 1.0).astype(np.float32)


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Smoothly resize an HxW image (float32, or float16 or any real dtype) to size = (height,
    width): float32, PIL bilinear, antialiased.

    Large or compact inputs are resized in bands (devolearn_web.resample), never widened to a
    full-size float32 copy first."""
    height, width = size
    small = pixels.size <= COMPACT_SIGNAL_PIXELS and height * width <= COMPACT_SIGNAL_PIXELS
    if small and pixels.dtype == np.float32 and pixels.flags.c_contiguous:
        if pixels.shape == (height, width):
            return pixels
        image = Image.fromarray(pixels, mode="F")
        return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    return resample.resize(pixels, (height, width))


def resize_in_bands(pixels: np.ndarray, size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """resize_image's answer in bands of rows, (first row, float32 band), in order: one band
    for a small image, about CONVERSION_BAND_PIXELS each for a large one (bounded memory)."""
    height, width = size
    if height * width <= COMPACT_SIGNAL_PIXELS and pixels.size <= COMPACT_SIGNAL_PIXELS:
        yield 0, resize_image(pixels, size)
        return
    yield from resample.resized_bands(pixels, size, CONVERSION_BAND_PIXELS)


def encode_gray_png(gray: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HxW array: 8-bit grayscale, every row filtered "up", fast zlib.

    Written here rather than by Pillow, whose adaptive row filters made this the slowest part
    of a segmentation answer after the network and the split (708x512 on a busy 2-core machine:
    13.0 ms with Pillow, 7.2 ms this way; smooth probability maps also come out smaller)."""
    return _one_byte_png(gray, PNG_GRAY, ())


def encode_indexed_png(
    indices: np.ndarray, palette: np.ndarray, alpha: Sequence[int] | None = None
) -> bytes:
    """PNG bytes of a uint8 HxW array of palette indices; `alpha` gives entries' opacity.

    Overlays hold a few colours: one byte per pixel instead of four encodes about four times
    faster than RGBA (docs/performance.md), and browsers draw it the same."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    chunks = [_png_chunk(b"PLTE", palette.tobytes())]
    if alpha is not None:
        chunks.append(_png_chunk(b"tRNS", bytes(int(a) for a in alpha)))
    return _one_byte_png(indices, PNG_PALETTE, chunks)


def _one_byte_png(values: np.ndarray, colour_type: int, chunks: Sequence[bytes]) -> bytes:
    """A PNG of one byte per pixel (gray or palette index), every row filtered "up".

    Filtered and compressed a band of rows at a time: no full-size copy of the image."""
    values = np.asarray(values, dtype=np.uint8)
    height, width = values.shape
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)  # no interlace
    compressor = zlib.compressobj(PNG_COMPRESS_LEVEL)
    # One IDAT chunk per compressed piece (PNG allows any number in a row): the pieces are
    # joined once, into the file, never copied into one chunk first.
    pieces = [PNG_SIGNATURE, _png_chunk(b"IHDR", header), *chunks]
    step = max(1, CONVERSION_BAND_PIXELS // max(1, width))
    for top in range(0, height, step):
        bottom = min(height, top + step)
        band = values[top:bottom]
        rows = np.empty((bottom - top, width + 1), dtype=np.uint8)
        rows[:, 0] = PNG_FILTER_UP  # the first row's "up" neighbour is zeros: it stays as it is
        if top == 0:
            rows[0, 1:] = band[0]
            np.subtract(band[1:], band[:-1], out=rows[1:, 1:])  # wraps modulo 256, as PNG wants
        else:
            np.subtract(band, values[top - 1 : bottom - 1], out=rows[:, 1:])
        pieces += _png_chunk_pieces(b"IDAT", compressor.compress(rows))
    pieces += _png_chunk_pieces(b"IDAT", compressor.flush())
    pieces.append(_png_chunk(b"IEND", b""))
    return b"".join(pieces)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join(_png_chunk_pieces(kind, data))


def _png_chunk_pieces(kind: bytes, data: bytes) -> list[bytes]:
    """A PNG chunk as [length and kind, data, CRC] (none when an IDAT piece is empty)."""
    if not data and kind == b"IDAT":
        return []
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return [struct.pack(">I", len(data)) + kind, data, struct.pack(">I", crc)]


def to_display_png(pixels: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a float32 HxW image, stretched by its 0.5/99.5 percentiles."""
    pixels = np.asarray(pixels, dtype=np.float32)
    low, high = np.percentile(pixels, [DISPLAY_LOW_PERCENTILE, DISPLAY_HIGH_PERCENTILE])
    if high - low < 1e-6:
        low, high = float(pixels.min()), float(max(pixels.max(), pixels.min() + 1e-6))
    stretched = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    return encode_gray_png(np.round(stretched * 255).astype(np.uint8))


def probability_to_png(probability: np.ndarray) -> bytes:
    """8-bit grayscale PNG of probability * 255 (float HxW in [0, 1], or uint8 already scaled:
    probability_to_uint8); no stretching."""
    if probability.dtype != np.uint8:
        probability = probability_to_uint8(probability)
    return encode_gray_png(probability)


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """uint8 round(probability * 255) of a float map in [0, 1]: the 8-bit map the PNG carries
    and the page's threshold slider reads."""
    return np.round(np.clip(probability, 0.0, 1.0) * 255).astype(np.uint8)


def probability_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """bool HxW: the pixels of a probability map at or over the threshold; for an 8-bit map
    (uint8, probability * 255) as the page's slider draws them (static/js/threshold.js)."""
    if probability.dtype == np.uint8:
        return probability >= threshold * 255
    return probability >= threshold


def png_data_url(png: bytes) -> str:
    """A data: URL for PNG bytes, for JSON answers and <img> tags."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
