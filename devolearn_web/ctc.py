"""Tracking downloads: the Cell Tracking Challenge's result layout (ZIP) and a CSV of tracks.

- ZIP: `res_track.txt` (one line per track: label begin end parent, as man_track.txt) and one
  `maskTTT.tif` per time point (16-bit labels = track ids, ZYX for z-stacks), the files the
  challenge's own evaluation (and py-ctcmetrics) reads; with founder names, also
  `founder_names.txt` (label name per named track), which the challenge's tools ignore, so
  res_track.txt keeps its four numbers per line.
- CSV: one row per nucleus per time point: time, track, parent, name (founder name, or empty),
  x, y, z (slices), volume
  (voxels, or pixels for single planes), and the same in um when the file is calibrated.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import numpy as np
import tifffile

from devolearn_web.assembly3d import objects_3d
from devolearn_web.downloads import labels_16bit
from devolearn_web.tracking import Track


def tracks_without_gaps(
    volumes: Sequence[np.ndarray], tracks: Sequence[Track]
) -> tuple[list[np.ndarray], list[Track]]:
    """The challenge refuses a track missing from a mask between its begin and end (gap closing
    bridges such gaps): each part after a gap becomes a new track whose parent is the part
    before it, and the masks of those time points carry the new id."""
    present: dict[int, list[int]] = {}
    for time, volume in enumerate(volumes):
        for label in np.unique(volume[volume > 0]):
            present.setdefault(int(label), []).append(time)
    next_id = max((track.track for track in tracks), default=0) + 1
    volumes = list(volumes)
    parts: list[tuple[Track, bool]] = []  # (part, is the track's first part)
    last_part: dict[int, int] = {}
    for track in tracks:
        times = present.get(track.track, [])
        runs = np.split(np.asarray(times), np.flatnonzero(np.diff(times) > 1) + 1) if times else []
        ident, parent = track.track, track.parent
        for index, run in enumerate(runs):
            if index:
                ident, parent = next_id, ident
                next_id += 1
                for time in run:
                    volume = volumes[time].copy()
                    volume[volume == track.track] = ident
                    volumes[time] = volume
            parts.append((Track(ident, int(run[0]), int(run[-1]), parent), index == 0))
        if not runs:
            parts.append((track, True))
        last_part[track.track] = ident
    # Daughters hang from the last part of their mother.
    fixed = [
        Track(part.track, part.begin, part.end, last_part.get(part.parent, part.parent))
        if first
        else part
        for part, first in parts
    ]
    return volumes, fixed


def ctc_zip(
    volumes: Sequence[np.ndarray], tracks: Sequence[Track], names: dict[int, str] | None = None
) -> bytes:
    """ZIP of res_track.txt and maskTTT.tif (labels = track ids) per time point, and
    founder_names.txt when tracks are named."""
    original = {track.track for track in tracks}
    volumes, tracks = tracks_without_gaps(volumes, tracks)
    named = _names_of_parts(tracks, original, names or {})
    digits = max(3, len(str(len(volumes) - 1)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        lines = "".join(f"{t.track} {t.begin} {t.end} {t.parent}\n" for t in tracks)
        bundle.writestr("res_track.txt", lines)
        if named:
            listed = "".join(f"{track} {name}\n" for track, name in sorted(named.items()))
            bundle.writestr("founder_names.txt", listed)
        for time, volume in enumerate(volumes):
            page = io.BytesIO()
            tifffile.imwrite(page, labels_16bit(volume), photometric="minisblack")
            bundle.writestr(f"mask{time:0{digits}d}.tif", page.getvalue())
    return buffer.getvalue()


def _names_of_parts(
    tracks: Sequence[Track], original: set[int], names: dict[int, str]
) -> dict[int, str]:
    """Names of the written tracks: a part after a gap carries its whole track's name."""
    parents = {track.track: track.parent for track in tracks}
    named = {}
    for track in tracks:
        whole = track.track
        while whole not in original and whole in parents:
            whole = parents[whole]
        if whole in names:
            named[track.track] = names[whole]
    return named


def tracks_csv(
    volumes: Sequence[np.ndarray],
    tracks: Sequence[Track],
    voxel_um: tuple[float, float, float] | None = None,
    names: dict[int, str] | None = None,
) -> str:
    """CSV: time, track, parent, name, x, y, z, volume (and in um when calibrated) per nucleus."""
    parents = {track.track: track.parent for track in tracks}
    names = names or {}
    header = ["time", "track", "parent", "name", "x", "y", "z", "volume"]
    if volumes and volumes[0].ndim != 3:
        voxel_um = None  # single planes: an area, not a volume, so no um3 column
    if voxel_um is not None:
        header += ["x_um", "y_um", "z_um", "volume_um3"]
    lines = [",".join(header)]
    for time, volume in enumerate(volumes):
        stack = volume if volume.ndim == 3 else volume[np.newaxis]
        for found in objects_3d(stack, voxel_um):
            label = found["label"]
            row = [time, label, parents.get(label, 0), names.get(label, "")]
            row += [found[key] for key in header[4:]]
            lines.append(",".join(str(value) for value in row))
    return "\n".join(lines) + "\n"
