"""A job's upload checked from its headers before it is queued: the same refusals as predict's.

The file is on disk (it may be gigabytes), so only its first bytes and its TIFF page table (or a
ZIP's list of files and its first time point) are read here; what only a full decode finds
fails the job with the decoder's sentence.
"""

from __future__ import annotations

import zipfile
from typing import BinaryIO

import numpy as np
import tifffile
from PIL import Image

from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.imaging import sniff_format
from devolearn_web.jobs.assembly import check_size, check_slider
from devolearn_web.jobs.settings import JobSettings
from devolearn_web.movies import sniff_movie
from devolearn_web.paged_stacks import (
    check_zip_options,
    is_zip,
    read_member,
    time_point_members,
)
from devolearn_web.stacks import (
    AXIS_WORDS,
    TIFF_ERRORS,
    _apply_override,
    _effective_axes,
    guess_axes,
    is_tiff,
)

HEAD_BYTES = 64 * 1024


def check_upload(
    stream: BinaryIO,
    filename: str | None,
    settings: JobSettings,
    options: dict | None = None,
    model: str = "",
) -> int:
    """The upload's size in bytes; BadImage, UnsupportedType or TooLarge as predict would say,
    and BadParameter when its axes cannot give the 3D nuclei or tracks the job asks for."""
    options = options or {}
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    if size == 0:
        raise BadImage("The file is empty (0 bytes).")
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    if sniff_movie(head) is not None:
        check_slider(options, model, ["time"])  # a movie's frames are time points
        return size
    if is_zip(head):
        check_zip_options(options.get("axes"), options.get("channel"))
        voxels = _check_zip(stream, settings)
        stream.seek(0)
        check_slider(options, model, ["time", "z"])  # a ZIP's TIFFs are z-stacks over time
        check_size(options, voxels, settings.max_assembly_voxels)
        return size
    sniff_format(head, filename)  # UnsupportedType, naming what the file looks like
    slider, voxels = None, 0  # a single 2D image has no frame axes
    if is_tiff(head):
        slider, voxels = _check_tiff(stream, settings, options.get("axes"))
    else:
        _check_image(stream, settings)
    stream.seek(0)
    check_slider(options, model, slider)
    check_size(options, voxels, settings.max_assembly_voxels)
    return size


def _check_tiff(
    stream: BinaryIO, settings: JobSettings, axes: str | None
) -> tuple[list[str] | None, int]:
    """The stack's frame axes ("time", "z") as the decoder will read them, from the page table
    (None for one page, a single image), and its number of values."""
    try:
        with tifffile.TiffFile(stream, name="upload.tif") as tiff:
            shape = tuple(tiff.series[0].shape)
            slider = _frame_axes(tiff, axes)
    except TIFF_ERRORS as error:
        raise BadImage("The TIFF is truncated or damaged, so its pages cannot be read.") from error
    voxels = int(np.prod(shape))
    if voxels > settings.max_stack_voxels:
        raise TooLarge(
            f"The stack holds {voxels / 1e6:.0f} million values (shape "
            f"{' x '.join(map(str, shape))}); jobs take stacks of up to "
            f"{settings.max_stack_voxels / 1e6:g} million. Send it as several jobs."
        )
    return slider, voxels


def _frame_axes(tiff: tifffile.TiffFile, axes: str | None) -> list[str] | None:
    """The frame axes by the decoder's rules (stacks.guess_axes, the axes field); None for one
    page. A file those rules cannot name is left to prepare, which checks the decoded stack."""
    series = tiff.series[0]
    file_axes, shape = _effective_axes(tiff, series)
    planes = [size for axis, size in zip(file_axes, shape, strict=True) if axis not in "YXS"]
    if int(np.prod(planes, dtype=np.int64)) <= 1:
        return None
    guessed, _ = guess_axes(file_axes, tiff)
    try:
        used = _apply_override(guessed, axes, shape)
    except BadParameter:
        return ["time", "z"]  # the decoder refuses these axes with its own sentence
    return [AXIS_WORDS[axis] for axis in ("T", "Z") if axis in used]


def _check_image(stream: BinaryIO, settings: JobSettings) -> None:
    try:
        with Image.open(stream) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage("The file could not be read as an image.") from error
    if width * height > settings.max_pixels:
        raise TooLarge(
            f"The image has {width * height / 1e6:.0f} million pixels; this server analyses up "
            f"to {settings.max_pixels / 1e6:g} million per frame."
        )


def _check_zip(stream: BinaryIO, settings: JobSettings) -> int:
    """A ZIP of tTTT.tif time points: its names, and the first one's shape times their count
    (its number of values, returned)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as error:
        raise BadImage("The ZIP is truncated or damaged, so its files cannot be listed.") from error
    with archive:
        members = time_point_members(archive)
        first = read_member(archive, members[0])  # one time point: tens of MB at most
    shape = (len(members), *first.shape)
    voxels = int(np.prod(shape))
    if voxels > settings.max_stack_voxels:
        raise TooLarge(
            f"The stack holds {voxels / 1e6:.0f} million values ({len(members)} time points of "
            f"{' x '.join(map(str, first.shape))}); jobs take stacks of up to "
            f"{settings.max_stack_voxels / 1e6:g} million. Send it as several jobs."
        )
    return voxels
