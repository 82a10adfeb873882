"""Stacks read a frame at a time from a file on disk: a job's multi-gigabyte TIFF, or a ZIP of
per-time-point TIFFs (the Cell Tracking Challenge's `t000.tif`, `t001.tif`...).

`stacks.read_tiff_stack` decodes a whole upload in memory, which is right for predict's 40 MB
but not for a 4.9 GB recording on a 512 MB worker. Here only the page table is read up front;
`frames(start, stop)` reads those frames' pages and nothing else. The axes, channel, positions
and scaling are decided by the same rules (and helpers) as `read_tiff_stack`, so a job's answer
is predict's. Grey pages only: colour pages and planar grey pages return None, and the caller
decodes them in memory as before (such files are small in practice).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.calibration import tiff_calibration
from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.imaging import check_pixel_values
from devolearn_web.signal import full_scale
from devolearn_web.stacks import (
    AXIS_WORDS,
    STATISTICS_SAMPLE_VOXELS,
    TIFF_ERRORS,
    FrameStack,
    _apply_override,
    _check_size,
    _effective_axes,
    _for_axes,
    _mode_of,
    _scaling_for_range,
    guess_axes,
)

DAMAGED = "The TIFF stack is truncated or damaged, so its pages cannot be read."
# Pages sampled per channel to choose the one that carries the signal (not every page).
CHANNEL_SAMPLE_PAGES = 8
ZIP_MAGIC = b"PK\x03\x04"
TIME_POINT_NAME = re.compile(r"(?:^|/)t(\d+)\.tiff?$", re.IGNORECASE)
# One time point of a ZIP is decoded whole (in the web process too, to check it): the CTC's is
# 25 MB; a member far beyond that is refused.
MAX_ZIP_MEMBER_BYTES = 100_000_000


def shaped_nothing(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An array of `shape` that holds no memory (a FrameStack's description of its frames)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * 3)


@dataclass
class PagedStack:
    """A FrameStack's description (`stack`, no pixels) and a way to read its frames."""

    stack: FrameStack
    page_of_frame: list[int]  # the file's page (or ZIP member and page) holding each frame
    reader: object

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop-1 as (n, H, W) in the file's dtype."""
        return np.stack([self.reader.page(self.page_of_frame[i]) for i in range(start, stop)])

    def close(self) -> None:
        self.reader.close()


class _TiffPages:
    """Page k of one TIFF series: a seek and a read when the data are contiguous, else decoded."""

    def __init__(self, tiff: tifffile.TiffFile, series) -> None:
        self.tiff = tiff
        self.series = series
        self.shape = tuple(series.keyframe.shape)
        self.dtype = np.dtype(series.dtype).newbyteorder(tiff.byteorder)
        self.offset = series.dataoffset  # None when compressed or scattered

    def page(self, index: int) -> np.ndarray:
        try:
            if self.offset is not None:
                count = int(np.prod(self.shape))
                handle = self.tiff.filehandle
                handle.seek(self.offset + index * count * self.dtype.itemsize)
                raw = np.frombuffer(handle.read(count * self.dtype.itemsize), self.dtype)
                if raw.size != count:
                    raise ValueError("short read")
                return raw.reshape(self.shape).astype(self.dtype.newbyteorder("="))
            return self._decoded(index)
        except TIFF_ERRORS as error:
            raise BadImage(DAMAGED) from error

    def _decoded(self, index: int) -> np.ndarray:
        try:
            return self.series.pages[index].asarray()
        except ValueError as error:
            if "imagecodecs" not in str(error):
                raise
        # LZW, PackBits...: tifffile needs an extra package; PIL seeks to the one page.
        from PIL import Image

        with Image.open(self.tiff.filehandle.path) as image:
            image.seek(index)
            return np.asarray(image)

    def close(self) -> None:
        self.tiff.close()


def open_tiff(
    path: Path,
    axes_override: str | None,
    channel: int | None,
    max_voxels: int,
    max_frames: int,
) -> PagedStack | None:
    """The TIFF at `path` as a PagedStack; None for colour or planar pages (decode in memory)."""
    try:
        tiff = tifffile.TiffFile(path)
    except TIFF_ERRORS as error:
        raise BadImage(DAMAGED) from error
    try:
        paged = _plan(tiff, axes_override, channel, max_voxels, max_frames)
    except BaseException:
        tiff.close()
        raise
    if paged is None:
        tiff.close()
    return paged


def _plan(tiff, axes_override, channel, max_voxels, max_frames) -> PagedStack | None:
    try:
        series = tiff.series[0]
        file_axes, shape = _effective_axes(tiff, series)
        page_shape = tuple(series.keyframe.shape)
        extra_series = len(tiff.series) - 1
        calibration = tiff_calibration(tiff)
        page_count = len(series.pages) if series.dataoffset is None else None
    except TIFF_ERRORS as error:
        raise BadImage(DAMAGED) from error
    if file_axes != series.axes or page_shape != shape[-2:] or len(shape) < 2:
        return None  # colour samples, or grey planes stored as one planar page
    guessed, source = guess_axes(file_axes, tiff)
    lead = guessed[:-2]
    if len(set(lead)) != len(lead):
        return None  # more unnamed axes than letters: read_tiff_stack's own rules apply
    _check_size(shape, max_voxels)
    check_pixel_values(np.dtype(series.dtype))
    used = _apply_override(guessed, axes_override, shape)
    lead_axes, lead_shape = used[:-2], tuple(shape[:-2])
    pages_needed = int(np.prod(lead_shape)) if lead_shape else 1
    if page_count is not None and page_count != pages_needed:
        return None
    reader = _TiffPages(tiff, series)
    notes = []
    if extra_series > 0:
        notes.append(f"This TIFF holds {extra_series + 1} image series: only the first was read.")
    channel_info, chosen, channel_note = _choose_channel(reader, lead_axes, lead_shape, channel)
    if channel_note:
        notes.append(channel_note)
    order = [axis for axis in ("T", "Z") if axis in lead_axes]
    sizes = [lead_shape[lead_axes.index(axis)] for axis in order]
    positions, page_of_frame = [], []
    for index in np.ndindex(*sizes) if sizes else [()]:
        position = dict(zip(order, index, strict=True))
        positions.append({AXIS_WORDS[axis]: int(value) for axis, value in position.items()})
        full = tuple(chosen if axis == "C" else position[axis] for axis in lead_axes)
        page_of_frame.append(int(np.ravel_multi_index(full, lead_shape)) if lead_shape else 0)
    if len(positions) > max_frames:
        raise TooLarge(
            f"The stack has {len(positions)} frames; this server analyses up to {max_frames}."
        )
    dtype = np.dtype(series.dtype).newbyteorder("=")
    offset, scale, range_note = _streamed_scaling(reader, dtype, sorted(set(page_of_frame)))
    if range_note:
        notes.append(range_note)
    axes_info = {
        "guessed": guessed,
        "used": used,
        "source": source if axes_override is None else "given with the request",
        "shape": [int(size) for size in shape],
        "frames": len(positions),
        "slider": [AXIS_WORDS[axis] for axis in order],
        **channel_info,
    }
    stack = FrameStack(
        kind="stack",
        data=shaped_nothing((len(positions), *page_shape), dtype),
        positions=tuple(positions),
        axes=axes_info,
        notes=tuple(notes),
        offset=offset,
        scale=scale,
        mode=_mode_of(dtype),
        calibration=_for_axes(calibration, used),
    )
    return PagedStack(stack, page_of_frame, reader)


def _choose_channel(reader, lead_axes: str, lead_shape: tuple, channel: int | None):
    """(channel info, chosen index or None, note): as stacks._select_channel (the busiest
    channel of a C axis), from sampled pages."""
    info: dict = {"channel": None, "channels": 1}
    if "C" not in lead_axes:
        if channel is not None and channel > 0:
            raise BadParameter(f"Channel {channel} does not exist: this stack has one channel (0).")
        return info, None, None
    position = lead_axes.index("C")
    count = lead_shape[position]
    info["channels"] = int(count)
    if channel is not None and channel >= count:
        raise BadParameter(
            f"Channel {channel} does not exist: this stack has {count} channels (0 to {count - 1})."
        )
    if channel is not None:
        return {**info, "channel": int(channel)}, int(channel), None
    others = [size for axis, size in zip(lead_axes, lead_shape, strict=True) if axis != "C"]
    positions = list(np.ndindex(*others)) if others else [()]
    picked = positions[:: max(1, len(positions) // CHANNEL_SAMPLE_PAGES)][:CHANNEL_SAMPLE_PAGES]
    spreads = []
    for candidate in range(count):
        values = []
        for rest in picked:
            index = list(rest)
            index.insert(position, candidate)
            page = reader.page(int(np.ravel_multi_index(tuple(index), lead_shape)))
            step = max(1, page.size * len(picked) // STATISTICS_SAMPLE_VOXELS)
            values.append(page.ravel()[::step].astype(np.float32))
        spreads.append(float(np.concatenate(values).std()))
    chosen = int(np.argmax(spreads))
    note = f"Channel {chosen} of {count} (counting from 0) carries the most signal and was used."
    return {**info, "channel": chosen}, chosen, note


def _streamed_scaling(reader, dtype: np.dtype, pages: list[int]):
    """stacks._unit_scaling's offset and scale, the range found a page at a time when needed."""
    if full_scale(dtype) is not None:
        return _scaling_for_range(dtype, 0.0, 0.0)
    low, high = np.inf, -np.inf
    for index in pages:
        page = reader.page(index)
        finite = page[np.isfinite(page)] if dtype.kind == "f" else page.ravel()
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if low > high:
        raise BadImage("The stack holds no finite values (all NaN or infinite).")
    return _scaling_for_range(dtype, low, high)


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def check_zip_options(axes: str | None, channel: int | None) -> None:
    """BadParameter for fields a ZIP of grey z-stacks cannot honour (its axes are TZ)."""
    if axes not in (None, "TZ"):
        raise BadParameter(
            f"A ZIP's TIFFs are time points of z-stacks: its axes are 'TZ', not '{axes}'."
        )
    if channel:
        raise BadParameter(f"Channel {channel} does not exist: a ZIP's time points have one (0).")


def time_point_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The ZIP's tTTT.tif members in time order; BadImage with a sentence when there are none."""
    found: dict[int, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.is_dir() or "__MACOSX" in info.filename:
            continue
        match = TIME_POINT_NAME.search(info.filename)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise BadImage(
                f"The ZIP holds two TIFFs for time point {number} ('{found[number].filename}' "
                f"and '{info.filename}'); keep one."
            )
        found[number] = info
    if not found:
        raise BadImage(
            "The ZIP holds no per-time-point TIFFs: name them t000.tif, t001.tif... (one "
            "z-stack per time point, as the Cell Tracking Challenge ships its sequences)."
        )
    for info in found.values():
        if info.file_size > MAX_ZIP_MEMBER_BYTES:
            raise TooLarge(
                f"'{info.filename}' is {info.file_size / 1e6:.0f} MB; one time point may be up "
                f"to {MAX_ZIP_MEMBER_BYTES / 1e6:g} MB."
            )
    return [found[number] for number in sorted(found)]


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One time point's TIFF as (Z, H, W); BadImage naming the member when it is not one."""
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise BadImage(f"'{info.filename}' in the ZIP is damaged and cannot be read.") from error
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            series = tiff.series[0]
            grey = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
            if series.keyframe.samplesperpixel > 1 and series.keyframe.photometric not in grey:
                raise BadImage(
                    f"'{info.filename}' has colour pages; each time point must be a grey z-stack."
                )
            array = series.asarray()
    except TIFF_ERRORS as error:
        raise BadImage(
            f"'{info.filename}' in the ZIP is not a readable TIFF (it is truncated or damaged)."
        ) from error
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise BadImage(
            f"'{info.filename}' has {array.ndim} dimensions ({' x '.join(map(str, array.shape))});"
            " each time point must be one z-stack (z, y, x)."
        )
    return array


class _ZipPages:
    """Frame k of a ZIP of time points: member k // depth, slice k % depth; one member cached."""

    def __init__(self, archive: zipfile.ZipFile, members: list, first: np.ndarray) -> None:
        self.archive = archive
        self.members = members
        self.depth = first.shape[0]
        self.shape, self.dtype = first.shape, first.dtype
        self.cached: tuple[int, np.ndarray] = (0, first)

    def page(self, index: int) -> np.ndarray:
        member, z = divmod(index, self.depth)
        if self.cached[0] != member:
            array = read_member(self.archive, self.members[member])
            if array.shape != self.shape or array.dtype != self.dtype:
                info = self.members[member]
                raise BadImage(
                    f"'{info.filename}' is {' x '.join(map(str, array.shape))} {array.dtype}, "
                    f"but '{self.members[0].filename}' is "
                    f"{' x '.join(map(str, self.shape))} {self.dtype}: every time point must "
                    "have the same size and bit depth."
                )
            self.cached = (member, array)
        return self.cached[1][z]

    def close(self) -> None:
        self.cached = (-1, np.empty(0))
        self.archive.close()


def open_zip(path: Path, max_voxels: int, max_frames: int) -> PagedStack:
    """A ZIP of tTTT.tif time points as a PagedStack: T outermost, then z."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise BadImage("The ZIP is truncated or damaged, so its files cannot be listed.") from error
    try:
        members = time_point_members(archive)
        first = read_member(archive, members[0])
        check_pixel_values(first.dtype)
        shape = (len(members), *first.shape)
        _check_size(shape, max_voxels)
        depth = first.shape[0]
        if len(members) * depth > max_frames:
            raise TooLarge(
                f"The stack has {len(members) * depth} frames; this server analyses up to "
                f"{max_frames}."
            )
        reader = _ZipPages(archive, members, first)
        dtype = first.dtype
        pages = list(range(len(members) * depth))
        offset, scale, range_note = _streamed_scaling(reader, dtype, pages)
    except BaseException:
        archive.close()
        raise
    positions = [{"time": t, "z": z} for t in range(len(members)) for z in range(depth)]
    first_name, last_name = members[0].filename, members[-1].filename
    notes = [
        f"{len(members)} time points from the ZIP's TIFFs ('{first_name}' to '{last_name}'), "
        f"{depth} z-slices each."
    ]
    if range_note:
        notes.append(range_note)
    stack = FrameStack(
        kind="stack",
        data=shaped_nothing((len(positions), *first.shape[1:]), dtype),
        positions=tuple(positions),
        axes={
            "guessed": "TZYX",
            "used": "TZYX",
            "source": "a ZIP of per-time-point TIFFs (tTTT.tif), each a z-stack",
            "shape": [int(size) for size in shape],
            "frames": len(positions),
            "slider": ["time", "z"],
            "channel": None,
            "channels": 1,
        },
        notes=tuple(notes),
        offset=offset,
        scale=scale,
        mode=_mode_of(dtype),
    )
    reader.cached = (0, first)
    return PagedStack(stack, pages, reader)


def one_frame(paged: PagedStack, frame: int) -> PagedStack:
    """Only frame `frame` of the stack (the `frame` field); BadParameter when it does not exist."""
    count = paged.stack.count
    if not 0 <= frame < count:
        raise BadParameter(f"Frame {frame} does not exist: there are {count} (0 to {count - 1}).")
    stack = paged.stack
    stack = replace(
        stack,
        data=shaped_nothing((1, stack.height, stack.width), stack.data.dtype),
        positions=stack.positions[frame : frame + 1],
    )
    return PagedStack(stack, paged.page_of_frame[frame : frame + 1], paged.reader)
