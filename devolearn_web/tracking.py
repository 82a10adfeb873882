"""Nuclei followed through time with divisions (laptrack), as the Cell Tracking Challenge's tracks.

Decisions:
- Nuclei are linked by their centres with laptrack's LAP tracker (Jaqaman et al. 2008): frame
  to frame, then gap closing over up to MAX_GAP missing time points and splitting (divisions:
  one parent, two daughters). Merging is off: nuclei do not fuse.
- Distances are measured in nucleus diameters of their own time (each centre, from the
  recording's middle, divided by the median nucleus diameter of the time points within
  SCALE_WINDOW): nuclei halve in volume at every round, so a fixed reach in um would be too
  short for a 4-cell embryo's divisions and too long for a 350-cell one's; the window keeps a
  round of divisions (many small newborn nuclei at once) from changing the unit in one step.
- A track is a CTC track: one nucleus from its birth (or the first time point) to its division
  (or the last); a division ends the parent's track and starts two daughter tracks with it as
  parent. Track ids start at 1 in order of first appearance.
- Before linking, two objects of one time point that are one nucleus cut in two are merged
  (merge_cut_nuclei): they share a wide face (CUT_CONTACT) and together are about as large as
  the nucleus they came from (CUT_VOLUME). A nucleus elongating in mitosis is often cut so for
  several time points, which the tracker would otherwise read as an early division. Nuclei
  lie inside their cells, so two nuclei touch at a point, not across a face; and newly formed
  daughter nuclei are small, together well under their mother's volume.
- Chips (objects under MIN_DIAMETER) are not tracked: one would take a daughter's place.
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
# The unit of distance at a time point is the median nucleus diameter of the time points this
# many before and after too (early rounds are about 15 minutes apart).
SCALE_WINDOW = 5
# Objects narrower than this (in that unit: 6% of a median nucleus's volume) are chips of the
# segmentation, not nuclei, and are left untracked; a newborn nucleus is about 0.55 wide.
MIN_DIAMETER = 0.4
# One nucleus cut in two: the face two objects share, over the smaller one's volume^(2/3), is
# at least this (a sphere cut through its middle: 1.95; two round nuclei touching: near 0); in
# a single plane, the shared edge over the smaller one's area^(1/2) (a disc cut: 1.6).
CUT_CONTACT = 0.5
# ... and together they hold this share of the volume of the nucleus they came from (the
# object of the time point before, or after for the first one, that overlaps them most).
CUT_VOLUME = (0.6, 1.5)


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


def face_contacts(labels: np.ndarray, spacing: Sequence[float]) -> dict[tuple[int, int], float]:
    """(smaller label, larger label) -> the area of the face two objects share (spacing units)."""
    contacts: dict[tuple[int, int], float] = {}
    for axis in range(labels.ndim):
        face = float(np.prod([length for other, length in enumerate(spacing) if other != axis]))
        moved = np.moveaxis(labels, axis, 0)
        below, above = moved[:-1], moved[1:]
        touching = (below > 0) & (above > 0) & (below != above)
        low = np.minimum(below[touching], above[touching]).astype(np.int64)
        high = np.maximum(below[touching], above[touching]).astype(np.int64)
        width = int(high.max(initial=0)) + 1
        codes, counts = np.unique(low * width + high, return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            pair = (code // width, code % width)
            contacts[pair] = contacts.get(pair, 0.0) + count * face
    return contacts


def merge_cut_nuclei(frames: Sequence[np.ndarray], spacing: Sequence[float]) -> list[np.ndarray]:
    """Per time point, old label -> label after merging nuclei cut in two (0 stays 0); the
    time point before (after merging), or the next for the first, is the reference."""
    merged: list[np.ndarray] = []
    voxel = float(np.prod(spacing))
    for time, labels in enumerate(frames):
        labels = np.asarray(labels)
        mapping = np.arange(int(labels.max(initial=0)) + 1)
        merged.append(mapping)
        if len(frames) < 2:
            continue
        reference = (
            merged[time - 1][np.asarray(frames[time - 1])] if time else np.asarray(frames[1])
        )
        volumes = np.bincount(labels.ravel()) * voxel
        power = (labels.ndim - 1) / labels.ndim  # a face's dimensions over a volume's
        reference_volumes = np.bincount(reference.ravel()) * voxel
        wide = [
            pair
            for pair, area in face_contacts(labels, spacing).items()
            if area >= CUT_CONTACT * min(volumes[pair[0]], volumes[pair[1]]) ** power
        ]
        boxes = ndi.find_objects(labels)
        members = {}
        # The largest pieces first: a small chip alone says little about the volume.
        for low, high in sorted(wide, key=lambda pair: -(volumes[pair[0]] + volumes[pair[1]])):
            first, second = int(mapping[low]), int(mapping[high])
            if first == second:
                continue
            group = members.get(first, [first]) + members.get(second, [second])
            box = _union_box([boxes[label - 1] for label in group])
            inside = np.isin(labels[box], group)
            under = reference[box][inside]
            under = under[under > 0]
            if under.size == 0:
                continue
            source = int(np.bincount(under).argmax())
            share = inside.sum() * voxel / reference_volumes[source]
            if CUT_VOLUME[0] <= share <= CUT_VOLUME[1]:
                keep, gone = min(first, second), max(first, second)
                mapping[np.isin(mapping, gone)] = keep
                members[keep] = group
                members.pop(gone, None)
    return merged


def _smooth_scales(diameters: Sequence[np.ndarray]) -> list[float]:
    """Per time point, the median nucleus diameter of the time points within SCALE_WINDOW: a
    burst of small newborn nuclei must not shrink the unit between two time points, or every
    nucleus would seem to jump."""
    medians = [float(np.median(d)) if len(d) else np.nan for d in diameters]
    scales = []
    for time in range(len(medians)):
        near = medians[max(0, time - SCALE_WINDOW) : time + SCALE_WINDOW + 1]
        near = [value for value in near if value == value and value > 0]
        scales.append(float(np.median(near)) if near else 1.0)
    return scales


def _union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    """The smallest box (slices) holding all of `boxes`."""
    return tuple(
        slice(min(box[axis].start for box in boxes), max(box[axis].stop for box in boxes))
        for axis in range(len(boxes[0]))
    )


def track_nuclei(frames: Sequence[np.ndarray], spacing: Sequence[float]) -> Tracking:
    """Track the labelled nuclei of each time point (HxW or ZxHxW label images, one per time)."""
    import pandas as pd
    from laptrack import LapTrack

    merges = merge_cut_nuclei(frames, spacing)
    lookups = [np.zeros(len(merge), dtype=np.uint32) for merge in merges]
    frames = [merge[np.asarray(labels)] for merge, labels in zip(merges, frames, strict=True)]
    measured = [centres_and_diameters(np.asarray(labels), spacing) for labels in frames]
    scales = _smooth_scales([diameters for _, _, diameters in measured])
    # Around the recording's middle, so a change of scale moves no one far.
    pooled = [centres for _, centres, _ in measured if len(centres)]
    middle = np.concatenate(pooled).mean(axis=0) if pooled else 0.0
    rows = []
    for time, (ids, centres, diameters) in enumerate(measured):
        chips = diameters < MIN_DIAMETER * scales[time]
        for label, centre in zip(
            ids[~chips], (centres[~chips] - middle) / scales[time], strict=True
        ):
            rows.append((time, int(label), *centre))
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
    tracking = _ctc_tracks(linked, splits, lookups)
    # The lookups answer for the labels given: a merged piece takes its nucleus's track.
    kept = tuple(lookup[merge] for lookup, merge in zip(tracking.lookups, merges, strict=True))
    return Tracking(tracking.tracks, kept)


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
