"""Nuclei followed through time with divisions (laptrack), as the Cell Tracking Challenge's tracks.

Decisions:
- Nuclei are linked by their centres with laptrack's LAP tracker (Jaqaman et al. 2008): frame
  to frame, then gap closing over up to MAX_GAP missing time points and splitting (divisions:
  one parent, two daughters). Merging is off: nuclei do not fuse.
- Distances are measured in nucleus diameters of their own time point (each centre divided by
  the median nucleus diameter then): nuclei halve in volume at every round, so a fixed reach in
  um would be too short for a 4-cell embryo's divisions and too long for a 350-cell one's.
- A track is a CTC track: one nucleus from its birth (or the first time point) to its division
  (or the last); a division ends the parent's track and starts two daughter tracks with it as
  parent. Track ids start at 1 in order of first appearance.
- laptrack (and pandas under it) is imported on first use, so a worker that never tracks does
  not pay its memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

# Reaches, in nucleus diameters of the time point: a frame-to-frame move, a daughter's distance
# from her mother, and a nucleus reappearing after a gap.
LINK_REACH = 1.0
DIVISION_REACH = 1.6
GAP_REACH = 1.2
MAX_GAP = 2


@dataclass(frozen=True)
class Track:
    """A CTC track: its id, first and last time point (0-based) and parent track (0: none)."""

    track: int
    begin: int
    end: int
    parent: int

    def to_dict(self) -> dict:
        return {"track": self.track, "begin": self.begin, "end": self.end, "parent": self.parent}


@dataclass(frozen=True)
class Tracking:
    """Tracks, and per time point a lookup from that time's label to its track id (0: none)."""

    tracks: list[Track]
    lookups: tuple[np.ndarray, ...]

    def relabel(self, time: int, labels: np.ndarray) -> np.ndarray:
        """A time point's labels with track ids instead (uint32, same shape)."""
        return self.lookups[time][labels]


def centres_and_diameters(labels: np.ndarray, spacing: Sequence[float]) -> tuple:
    """(label ids, centres (n, ndim) in spacing units, equivalent diameters (n,)) of a label
    image (HxW or ZxHxW); `spacing` is one length per axis."""
    count = int(labels.max(initial=0))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    ids = np.flatnonzero(sizes) + 1
    if ids.size == 0:
        return ids, np.zeros((0, labels.ndim)), np.zeros(0)
    centres = np.array(ndi.center_of_mass(labels > 0, labels, ids)) * np.asarray(spacing)
    measure = sizes[ids - 1] * float(np.prod(spacing))
    if labels.ndim == 3:
        diameters = np.cbrt(6.0 * measure / np.pi)
    else:
        diameters = np.sqrt(4.0 * measure / np.pi)
    return ids, centres, diameters


def track_nuclei(frames: Sequence[np.ndarray], spacing: Sequence[float]) -> Tracking:
    """Track the labelled nuclei of each time point (HxW or ZxHxW label images, one per time)."""
    import pandas as pd
    from laptrack import LapTrack

    rows = []
    for time, labels in enumerate(frames):
        ids, centres, diameters = centres_and_diameters(np.asarray(labels), spacing)
        if ids.size == 0:
            continue
        scale = float(np.median(diameters)) or 1.0
        for label, centre in zip(ids, centres / scale, strict=True):
            rows.append((time, int(label), *centre))
    lookups = [np.zeros(int(np.asarray(f).max(initial=0)) + 1, dtype=np.uint32) for f in frames]
    if not rows:
        return Tracking([], tuple(lookups))
    coordinates = [f"c{axis}" for axis in range(len(spacing))]
    table = pd.DataFrame(rows, columns=["frame", "label", *coordinates])
    tracker = LapTrack(
        cutoff=LINK_REACH**2,
        splitting_cutoff=DIVISION_REACH**2,
        gap_closing_cutoff=GAP_REACH**2,
        gap_closing_max_frame_count=MAX_GAP,
        merging_cutoff=False,
    )
    linked, splits, _ = tracker.predict_dataframe(table, coordinates, only_coordinate_cols=False)
    return _ctc_tracks(linked, splits, lookups)


def _ctc_tracks(linked, splits, lookups: list[np.ndarray]) -> Tracking:
    """laptrack's segments as CTC tracks numbered from 1 in order of first appearance."""
    spans = linked.groupby("track_id")["frame"].agg(["min", "max"]).sort_values(["min", "max"])
    numbers = {int(segment): index for index, segment in enumerate(spans.index, start=1)}
    parents = {}
    if not splits.empty:  # laptrack gives no columns at all when nothing divided
        for parent, child in zip(splits["parent_track_id"], splits["child_track_id"], strict=True):
            parents[numbers[int(child)]] = numbers[int(parent)]
    for frame, label, segment in zip(
        linked["frame"], linked["label"], linked["track_id"], strict=True
    ):
        lookups[int(frame)][int(label)] = numbers[int(segment)]
    tracks = [
        Track(numbers[int(segment)], int(span["min"]), int(span["max"]), 0)
        for segment, span in spans.iterrows()
    ]
    tracks = [
        Track(track.track, track.begin, track.end, parents.get(track.track, 0)) for track in tracks
    ]
    return Tracking(tracks, tuple(lookups))


def nuclei_per_time(tracks: Sequence[Track], times: int) -> list[int]:
    """How many tracks are alive at each time point (gaps counted as alive)."""
    alive = np.zeros(times + 1, dtype=int)
    for track in tracks:
        alive[track.begin] += 1
        alive[track.end + 1] -= 1
    return np.cumsum(alive)[:times].tolist()
