"""Tracking downloads: the Cell Tracking Challenge's result layout (ZIP) and a CSV of tracks.

- ZIP: `res_track.txt` (one line per track: label begin end parent, as man_track.txt) and one
  `maskTTT.tif` per time point (16-bit labels = track ids, ZYX for z-stacks), the files the
  challenge's own evaluation (and py-ctcmetrics) reads.
- CSV: one row per nucleus per time point: time, track, parent, x, y, z (slices), volume
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


def ctc_zip(volumes: Sequence[np.ndarray], tracks: Sequence[Track]) -> bytes:
    """ZIP of res_track.txt and maskTTT.tif (labels = track ids) per time point."""
    digits = max(3, len(str(len(volumes) - 1)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        lines = "".join(f"{t.track} {t.begin} {t.end} {t.parent}\n" for t in tracks)
        bundle.writestr("res_track.txt", lines)
        for time, volume in enumerate(volumes):
            page = io.BytesIO()
            tifffile.imwrite(page, labels_16bit(volume), photometric="minisblack")
            bundle.writestr(f"mask{time:0{digits}d}.tif", page.getvalue())
    return buffer.getvalue()


def tracks_csv(
    volumes: Sequence[np.ndarray],
    tracks: Sequence[Track],
    voxel_um: tuple[float, float, float] | None = None,
) -> str:
    """CSV: time, track, parent, x, y, z, volume (and in um when calibrated) per nucleus."""
    parents = {track.track: track.parent for track in tracks}
    header = ["time", "track", "parent", "x", "y", "z", "volume"]
    if volumes and volumes[0].ndim != 3:
        voxel_um = None  # single planes: an area, not a volume, so no um3 column
    if voxel_um is not None:
        header += ["x_um", "y_um", "z_um", "volume_um3"]
    lines = [",".join(header)]
    for time, volume in enumerate(volumes):
        stack = volume if volume.ndim == 3 else volume[np.newaxis]
        for found in objects_3d(stack, voxel_um):
            row = [time, found["label"], parents.get(found["label"], 0)]
            row += [found[key] for key in header[3:]]
            lines.append(",".join(str(value) for value in row))
    return "\n".join(lines) + "\n"
