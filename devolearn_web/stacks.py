"""Multi-page TIFFs and ImageJ hyperstacks as a stack of signal frames, with their axes guessed.

Decisions:
- Axes come from the file when it names them (ImageJ hyperstack metadata, OME, tifffile's own
  shaped metadata); pages nobody named are read as z-slices, because the Cell Tracking Challenge
  stores one multi-page TIFF per time point with one page per z-slice. The guess is always
  reported, and the caller may override it (`axes="T"`, `axes="TZC"`...).
- A channel axis (C, or colour samples S) is reduced to one signal image per frame as the
  single-image decoder does: the channel that clearly carries the signal, else luminance for
  colour samples; the caller may pick a channel by index.
- Time and z are flattened into one sequence of frames, time outermost, each frame keeping its
  position ({"t": 3, "z": 12}) so a slider and a CSV can name it.
- Frames stay in the file's dtype and are scaled to [0, 1] one at a time (`pixels`, float32 or
  float16 for large frames): a stack is never held as float32 in full, so memory is the
  file's own size.
- The file's pixel size (and z spacing, when z is one of the axes used) is kept as
  `calibration` for the downloads; frames carry none, so a stack's answer states it once.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import numpy as np
import tifffile

from devolearn_web.calibration import Calibration, tiff_calibration
from devolearn_web.config import limit_default
from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.imaging import (
    CODEC_ERRORS,
    CONVERSION_BAND_PIXELS,
    DecodedImage,
    check_pixel_values,
    signal_dtype,
)
from devolearn_web.signal import (
    CHANNEL_NAMES,
    LUMINANCE_WEIGHTS,
    dominant_channel,
    full_scale,
    unit_scaling,
)
from devolearn_web.tiff_source import tiff_from

# 40 frames of 4 megapixels, or a 389-frame movie of 708 x 512: bounded memory and time.
# The defaults live in config.LIMITS; the app passes its config's values.
DEFAULT_MAX_STACK_VOXELS = limit_default("MAX_STACK_VOXELS")
DEFAULT_MAX_STACK_FRAMES = limit_default("MAX_STACK_FRAMES")
STACK_AXES = ("T", "Z", "C")
AXIS_WORDS = {"T": "time", "Z": "z", "C": "channel"}
# Axes tifffile uses for pages whose meaning no metadata states.
UNNAMED_AXES = frozenset("IQ")
# Statistics for choosing a channel need a sample, not every voxel.
STATISTICS_SAMPLE_VOXELS = 2_000_000
TIFF_ERRORS = (
    tifffile.TiffFileError,
    ValueError,
    OSError,
    struct.error,
    IndexError,
    KeyError,
    *CODEC_ERRORS,
)


@dataclass(frozen=True)
class FrameStack:
    """Frames of a stack or movie: `data` (N, H, W) in the file's dtype, read one at a time."""

    kind: str  # "stack" or "movie"
    data: np.ndarray
    positions: tuple[dict, ...]
    axes: dict
    notes: tuple[str, ...] = ()
    offset: float = 0.0
    scale: float = 1.0
    mode: str = "L"
    frame_times_s: tuple[float, ...] | None = field(default=None, repr=False)
    calibration: Calibration | None = None

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    def pixels(self, index: int) -> np.ndarray:
        """Frame `index` as HxW in [0, 1]: float32 (float16 for large frames, as
        imaging.signal_dtype says), converted a band of rows at a time."""
        frame = self.data[index]
        out = np.empty(frame.shape, dtype=signal_dtype(frame.size))
        step = max(1, CONVERSION_BAND_PIXELS // max(1, frame.shape[1]))
        for top in range(0, frame.shape[0], step):
            out[top : top + step] = self._unit(frame[top : top + step])
        return out

    def _unit(self, rows: np.ndarray) -> np.ndarray:
        # Narrowing a signalling NaN warns ("invalid value"); NaNs become 0 below all the same.
        with np.errstate(invalid="ignore"):
            values = rows.astype(np.float32)
        if self.offset or self.scale != 1.0:
            values = (values - np.float32(self.offset)) * np.float32(self.scale)
        return np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)

    def image(self, index: int, keep_calibration: bool = False) -> DecodedImage:
        """Frame `index` as the single-image decoder would have returned it.

        `keep_calibration` gives it the stack's pixel size, for a frame analysed alone."""
        calibration = None
        if keep_calibration and self.calibration is not None:
            calibration = self.calibration.without_z()
        return DecodedImage(self.pixels(index), self.width, self.height, self.mode, (), calibration)


def is_tiff(data: bytes) -> bool:
    """True for TIFF and BigTIFF magic bytes."""
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def tiff_frame_count(data: bytes, parsed: tifffile.TiffFile | None = None) -> int:
    """How many frames (planes, channels and colour samples aside) the first series holds;
    `parsed`: the TIFF already parsed."""
    if not is_tiff(data):
        return 0
    try:
        with tiff_from(data, parsed) as tiff:
            series = tiff.series[0]
            axes, shape = _effective_axes(tiff, series)
    except TIFF_ERRORS:
        return 1  # the single-image decoder reports what is wrong with it
    return int(
        np.prod([size for axis, size in zip(axes, shape, strict=True) if axis not in "CS"][:-2])
    )


def parse_axes_override(raw: str | None) -> str | None:
    """The `axes` form field ("Z", "t", "TZC"...) as upper-case letters, or None when blank."""
    if raw is None or not raw.strip():
        return None
    letters = raw.strip().upper().replace(",", "").replace(" ", "")
    if letters.endswith("YX"):
        letters = letters[:-2]
    if not letters or any(letter not in STACK_AXES for letter in letters):
        raise BadParameter(
            f"The axes '{raw[:20]}' are not valid: give one letter per stack dimension, "
            "outermost first, from T (time), Z (z-slice) and C (channel), e.g. 'Z' or 'TZ'."
        )
    if len(set(letters)) != len(letters):
        raise BadParameter(f"The axes '{raw[:20]}' name the same axis twice.")
    return letters


def parse_channel(raw: str | None) -> int | None:
    """The `channel` form field as a 0-based index, or None when blank."""
    if raw is None or not raw.strip():
        return None
    try:
        channel = int(raw)
    except ValueError as error:
        raise BadParameter(
            f"The channel must be a whole number (0 for the first); not '{raw[:20]}'."
        ) from error
    if channel < 0:
        raise BadParameter("The channel must be 0 or more (0 is the first channel).")
    return channel


def read_tiff_stack(
    data: bytes,
    axes_override: str | None = None,
    channel: int | None = None,
    max_voxels: int = DEFAULT_MAX_STACK_VOXELS,
    max_frames: int = DEFAULT_MAX_STACK_FRAMES,
    parsed: tifffile.TiffFile | None = None,
) -> FrameStack:
    """A multi-page TIFF or ImageJ hyperstack as a FrameStack, with its axes guessed or given;
    `parsed`: the TIFF already parsed."""
    try:
        with tiff_from(data, parsed) as tiff:
            series = tiff.series[0]
            file_axes, shape = _effective_axes(tiff, series)
            guessed, source = guess_axes(file_axes, tiff)
            _check_size(shape, max_voxels)
            array = _read_series(tiff, series, shape)
            extra_series = len(tiff.series) - 1
            calibration = tiff_calibration(tiff)
    except TIFF_ERRORS as error:
        raise BadImage(
            "The TIFF stack is truncated or damaged, so its pages cannot be read."
        ) from error
    check_pixel_values(array.dtype)
    used = _apply_override(guessed, axes_override, shape)
    notes = []
    if extra_series > 0:
        notes.append(f"This TIFF holds {extra_series + 1} image series: only the first was read.")
    array, used_axes = _colour_samples_last(array, used)
    signal, channel_info, channel_note = _select_channel(array, used_axes, channel)
    if channel_note:
        notes.append(channel_note)
    frames, positions, order = _flatten_frames(signal, used_axes.replace("C", "").replace("S", ""))
    if frames.shape[0] > max_frames:
        raise TooLarge(
            f"The stack has {frames.shape[0]} frames; this server analyses up to {max_frames}."
        )
    offset, scale, range_note = _unit_scaling(frames)
    if range_note:
        notes.append(range_note)
    axes_info = {
        "guessed": guessed,
        "used": used,
        "source": source if axes_override is None else "given with the request",
        "shape": [int(size) for size in shape],
        "frames": int(frames.shape[0]),
        "slider": [AXIS_WORDS[axis] for axis in order],
        **channel_info,
    }
    return FrameStack(
        kind="stack",
        data=frames,
        positions=tuple(positions),
        axes=axes_info,
        notes=tuple(notes),
        offset=offset,
        scale=scale,
        mode=_mode_of(frames.dtype),
        calibration=_for_axes(calibration, used),
    )


def _for_axes(calibration: Calibration | None, axes: str) -> Calibration | None:
    """The calibration without its z spacing when no axis used is z (time points have none)."""
    if calibration is None or "Z" in axes:
        return calibration
    return calibration.without_z()


def _effective_axes(tiff: tifffile.TiffFile, series) -> tuple[str, tuple[int, ...]]:
    """Series axes and shape, with planar 'samples' that are not colour read as pages."""
    axes, shape = series.axes, tuple(series.shape)
    page = tiff.pages[0]
    gray = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    if "S" in axes and not axes.endswith("S") and page.photometric in gray:
        # tifffile stores a (3, H, W) gray stack as one planar page; its samples are pages.
        axes = axes.replace("S", "I")
    return axes, shape


def guess_axes(file_axes: str, tiff: tifffile.TiffFile) -> tuple[str, str]:
    """The axes as T/Z/C/S + YX letters, and a sentence saying where the guess came from."""
    named = [axis for axis in file_axes if axis not in UNNAMED_AXES]
    letters = []
    free = [axis for axis in ("Z", "T", "C") if axis not in named]
    guessed_any = False
    for axis in file_axes:
        if axis in UNNAMED_AXES:
            letters.append(free.pop(0) if free else "Z")
            guessed_any = True
        elif axis in "TZCYXS":
            letters.append(axis)
        else:
            # Other tifffile letters (angle, phase, lambda...) are treated as extra time points.
            letters.append("T" if "T" not in letters and "T" not in named else "Z")
            guessed_any = True
    if tiff.is_imagej and not guessed_any:
        source = "ImageJ hyperstack metadata"
    elif tiff.is_ome and not guessed_any:
        source = "OME metadata"
    elif not guessed_any:
        source = "the file's own axes metadata"
    else:
        source = (
            "no metadata names the pages, so they are read as z-slices (one multi-page TIFF per "
            "time point, as the Cell Tracking Challenge stores them); choose time if they are "
            "time points"
        )
    return "".join(letters), source


def _apply_override(guessed: str, override: str | None, shape: tuple[int, ...]) -> str:
    if override is None:
        return guessed
    stack_positions = [i for i, axis in enumerate(guessed) if axis in STACK_AXES]
    if len(override) != len(stack_positions):
        sizes = " x ".join(str(shape[i]) for i in stack_positions) or "none"
        raise BadParameter(
            f"The axes '{override}' name {len(override)} dimension(s), but this stack has "
            f"{len(stack_positions)} besides the image plane (sizes {sizes})."
        )
    letters = list(guessed)
    for position, letter in zip(stack_positions, override, strict=True):
        letters[position] = letter
    return "".join(letters)


def _check_size(shape: tuple[int, ...], max_voxels: int) -> None:
    voxels = int(np.prod(shape))
    if voxels > max_voxels:
        raise TooLarge(
            f"The stack holds {voxels / 1e6:.0f} million values "
            f"(shape {' x '.join(map(str, shape))}); "
            f"this server analyses stacks of up to {max_voxels / 1e6:g} million."
        )


def _read_series(tiff: tifffile.TiffFile, series, shape: tuple[int, ...]) -> np.ndarray:
    try:
        return series.asarray().reshape(shape)
    except ValueError as error:
        if "imagecodecs" not in str(error):
            raise
    # LZW, JPEG, PackBits...: tifffile needs an extra package, PIL decodes them page by page.
    from PIL import Image, ImageSequence

    tiff.filehandle.seek(0)
    with Image.open(io.BytesIO(tiff.filehandle.read())) as image:
        pages = [np.asarray(page) for page in ImageSequence.Iterator(image)]
    return np.stack(pages).reshape(shape)


def _colour_samples_last(array: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    if "S" in axes and axes.index("S") != len(axes) - 1:
        array = np.moveaxis(array, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    return array, axes


def _select_channel(
    array: np.ndarray, axes: str, channel: int | None
) -> tuple[np.ndarray, dict, str | None]:
    """Drop the C and S axes: the requested channel, the dominant one, or luminance (colour)."""
    info: dict = {"channel": None, "channels": 1}
    note = None
    if "C" in axes:
        position = axes.index("C")
        count = array.shape[position]
        info["channels"] = int(count)
        if channel is not None and channel >= count:
            raise BadParameter(
                f"Channel {channel} does not exist: this stack has {count} channels "
                f"(0 to {count - 1})."
            )
        chosen = (
            channel if channel is not None else _dominant_channel(np.moveaxis(array, position, -1))
        )
        array = np.take(array, chosen, axis=position)
        axes = axes.replace("C", "")
        info["channel"] = int(chosen)
        if channel is None:
            note = (
                f"Channel {chosen} of {count} (counting from 0) carries the most signal "
                "and was used."
            )
    if axes.endswith("S"):
        samples = array.shape[-1]
        if channel is not None and info["channel"] is None:
            if channel >= samples:
                raise BadParameter(
                    f"Channel {channel} does not exist: the pages have {samples} colour samples."
                )
            return array[..., channel], {**info, "channel": channel, "channels": samples}, None
        colour = array[..., :3]
        if colour.shape[-1] < 3:
            return array[..., 0], info, note
        dominant = _dominant_channel(colour, require_dominance=True)
        if dominant is not None:
            name = CHANNEL_NAMES[dominant]
            return (
                array[..., dominant],
                {**info, "channel": dominant, "channels": samples},
                (f"Colour stack: the {name} channel carries the signal and was used."),
            )
        luminance = (colour.astype(np.float32) @ LUMINANCE_WEIGHTS).astype(np.float32)
        if array.dtype.kind == "u":
            luminance /= np.float32(np.iinfo(array.dtype).max)
        return (
            luminance,
            {**info, "channels": samples},
            ("Colour stack with signal in several channels: its brightness (luminance) was used."),
        )
    if channel is not None and channel > 0 and info["channel"] is None:
        # No C or S axis: one channel, 0; a higher one must not be ignored while 0 is analysed.
        raise BadParameter(f"Channel {channel} does not exist: this stack has one channel (0).")
    return array, info, note


def _dominant_channel(channels_last: np.ndarray, require_dominance: bool = False) -> int | None:
    """Index of the channel (last axis) with the widest spread; with require_dominance, the one
    rule of devolearn_web.signal (None when none clearly leads)."""
    flat = channels_last.reshape(-1, channels_last.shape[-1])
    step = max(1, flat.shape[0] // STATISTICS_SAMPLE_VOXELS)
    spreads = flat[::step].astype(np.float32).std(axis=0)
    if not require_dominance:
        return int(np.argmax(spreads))
    return dominant_channel(spreads) if len(spreads) > 1 else None


def _flatten_frames(array: np.ndarray, axes: str) -> tuple[np.ndarray, list[dict], list[str]]:
    """(N, H, W) frames, time outermost then z, and each frame's position."""
    stack_axes = axes[:-2]
    order = [axis for axis in ("T", "Z") if axis in stack_axes]
    if order:
        array = np.transpose(
            array,
            [stack_axes.index(axis) for axis in order] + [len(stack_axes), len(stack_axes) + 1],
        )
    sizes = array.shape[: len(order)]
    frames = array.reshape((-1, *array.shape[-2:]))
    positions = []
    for index in np.ndindex(*sizes) if sizes else [()]:
        positions.append(
            {AXIS_WORDS[axis]: int(value) for axis, value in zip(order, index, strict=True)}
        )
    return frames, positions, order


def _unit_scaling(frames: np.ndarray) -> tuple[float, float, str | None]:
    """Offset and scale taking the stack's values to [0, 1] (devolearn_web.signal's rule)."""
    if full_scale(frames.dtype) is not None:
        return _scaling_for_range(frames.dtype, 0.0, 0.0)
    finite = frames[np.isfinite(frames)] if frames.dtype.kind == "f" else frames.ravel()
    if finite.size == 0:
        raise BadImage("The stack holds no finite values (all NaN or infinite).")
    return _scaling_for_range(frames.dtype, float(finite.min()), float(finite.max()))


def _scaling_for_range(dtype: np.dtype, low: float, high: float) -> tuple[float, float, str | None]:
    """Offset and scale for a dtype whose values span low..high (ignored for 8/16-bit, bool):
    devolearn_web.signal.unit_scaling, the rule single images follow too."""
    scaling = unit_scaling(dtype, low, high)
    if not scaling.by_range:
        return scaling.offset, scaling.scale, None
    note = (
        f"{dtype.itemsize * 8}-bit values were scaled from the stack's own range "
        f"({low:g} to {high:g}) to 0..1, the same for every frame."
    )
    return scaling.offset, scaling.scale, note


def _mode_of(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "L"
    if dtype.kind == "u" and dtype.itemsize == 2:
        return "I;16"
    return "F" if dtype.kind == "f" else "I"
