"""Tracks through time: hand-made label time series with a division and a missed time point."""

from __future__ import annotations

import numpy as np

from devolearn_web.tracking import Track, nuclei_per_time, track_nuclei

SHAPE = (64, 96)


def disks(*centres: tuple[float, float], radius: float = 6) -> np.ndarray:
    """HxW labels 1..n, one disk per (row, col) centre, in the order given."""
    rows, cols = np.indices(SHAPE)
    labels = np.zeros(SHAPE, dtype=np.int32)
    for label, (row, col) in enumerate(centres, start=1):
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = label
    return labels


def test_a_division_ends_the_mother_and_starts_two_daughters():
    frames = [
        disks((32, 20), (32, 70)),
        disks((32, 22), (32, 70)),
        disks((28, 23), (37, 24), (32, 71)),  # the left nucleus divided
        disks((26, 24), (39, 25), (32, 72)),
    ]
    tracking = track_nuclei(frames, spacing=(1.0, 1.0))
    by_id = {track.track: track for track in tracking.tracks}
    assert len(tracking.tracks) == 4
    mother = tracking.lookups[0][1]
    still = tracking.lookups[0][2]
    assert by_id[mother] == Track(mother, 0, 1, 0)
    assert by_id[still] == Track(still, 0, 3, 0)
    daughters = {tracking.lookups[2][1], tracking.lookups[2][2]}
    assert {by_id[d].parent for d in daughters} == {mother}
    assert all((by_id[d].begin, by_id[d].end) == (2, 3) for d in daughters)
    # The labels of a later time point carry the same track ids as the daughters' first.
    assert {tracking.lookups[3][1], tracking.lookups[3][2]} == daughters
    assert nuclei_per_time(tracking.tracks, 4) == [2, 2, 3, 3]


def test_a_nucleus_missed_at_one_time_point_keeps_its_track():
    frames = [disks((32, 20), (32, 70)), disks((32, 70)), disks((32, 21), (32, 70))]
    tracking = track_nuclei(frames, spacing=(1.0, 1.0))
    assert len(tracking.tracks) == 2
    assert tracking.lookups[0][1] == tracking.lookups[2][1]


def test_nuclei_in_3d_are_tracked_with_their_z_spacing():
    volume = np.zeros((6, *SHAPE), dtype=np.int32)
    volume[1:4][:, disks((32, 20)) > 0] = 1
    volume[2:5][:, disks((32, 70)) > 0] = 2
    tracking = track_nuclei([volume, volume], spacing=(2.0, 1.0, 1.0))
    assert [(track.begin, track.end, track.parent) for track in tracking.tracks] == [(0, 1, 0)] * 2
    relabelled = tracking.relabel(1, volume)
    assert set(np.unique(relabelled)) == {0, *(track.track for track in tracking.tracks)}


def test_no_nuclei_no_tracks():
    tracking = track_nuclei([np.zeros(SHAPE, dtype=np.int32)] * 2, spacing=(1.0, 1.0))
    assert tracking.tracks == []
