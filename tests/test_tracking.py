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


VOLUME = (24, 64, 96)


def balls(*balls_: tuple[tuple[float, float, float], float]) -> np.ndarray:
    """ZxHxW labels 1..n, one ball per ((z, row, col), radius), in the order given."""
    z, rows, cols = np.indices(VOLUME)
    labels = np.zeros(VOLUME, dtype=np.int32)
    for label, ((cz, cy, cx), radius) in enumerate(balls_, start=1):
        labels[(z - cz) ** 2 + (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = label
    return labels


def cut_in_two(labels: np.ndarray, label: int) -> np.ndarray:
    """`label`'s right half (columns past its centre) as a new label: one nucleus cut in two."""
    cut = labels.copy()
    cols = np.nonzero(labels == label)[2]
    middle = (cols.min() + cols.max()) / 2
    right = (labels == label) & (np.indices(labels.shape)[2] > middle)
    cut[right] = labels.max() + 1
    return cut


def test_a_nucleus_cut_in_two_for_three_time_points_is_one_track_without_division():
    whole = balls(((12, 32, 30), 8), ((12, 32, 72), 8))
    frames = [whole, whole, cut_in_two(whole, 1), cut_in_two(whole, 1), cut_in_two(whole, 1)]
    frames += [whole, whole]
    tracking = track_nuclei(frames, spacing=(1.0, 1.0, 1.0))
    assert [(track.begin, track.end, track.parent) for track in tracking.tracks] == [(0, 6, 0)] * 2
    # Both halves carry their nucleus's track id.
    assert tracking.lookups[3][1] == tracking.lookups[3][3] == tracking.lookups[0][1]


def test_a_division_into_two_separate_small_nuclei_stays_a_division():
    mother = balls(((12, 32, 40), 8), ((12, 32, 80), 7))
    # Newly formed daughters are small (0.7 of a grown one's radius) and apart.
    daughters = balls(((12, 32, 32), 4.5), ((12, 32, 48), 4.5), ((12, 32, 80), 7))
    grown = balls(((12, 32, 31), 6), ((12, 32, 49), 6), ((12, 32, 80), 7))
    tracking = track_nuclei([mother, mother, daughters, grown, grown], (1.0, 1.0, 1.0))
    spans = sorted((track.begin, track.end, bool(track.parent)) for track in tracking.tracks)
    assert spans == [(0, 1, False), (0, 4, False), (2, 4, True), (2, 4, True)]


def test_two_nuclei_touching_at_a_point_are_not_merged():
    # Apart by a hair: their faces touch over a few voxels only.
    frames = [balls(((12, 32, 40), 8), ((12, 32, 57), 8.5))] * 3
    assert frames[0][12, 32, 48] == 1 and frames[0][12, 32, 49] == 2
    tracking = track_nuclei(frames, spacing=(1.0, 1.0, 1.0))
    assert len(tracking.tracks) == 2 and all(not track.parent for track in tracking.tracks)


def test_chips_of_the_segmentation_are_not_tracked():
    frames = [balls(((12, 32, 30), 8), ((12, 10, 80), 1.5))] * 3
    tracking = track_nuclei(frames, spacing=(1.0, 1.0, 1.0))
    assert len(tracking.tracks) == 1
    assert tracking.lookups[1][2] == 0 and tracking.lookups[1][1] == tracking.tracks[0].track


def test_a_round_of_small_newborn_nuclei_does_not_break_the_other_tracks():
    # Two large nuclei far out at the ends; four divide into eight small ones in the middle,
    # which halves the median diameter from one time point to the next.
    ends = (((12, 32, 6), 6), ((12, 32, 90), 6))
    before = [((12, 16 + 32 * (i % 2), 30 + 12 * (i // 2)), 5) for i in range(4)]
    after = [((12, 10 + 14 * (i % 4), 30 + 12 * (i // 4)), 3) for i in range(8)]
    frames = [balls(*ends, *before)] * 3 + [balls(*ends, *after)] * 3
    tracking = track_nuclei(frames, spacing=(1.0, 1.0, 1.0))
    for label in (1, 2):
        track = tracking.lookups[0][label]
        assert tracking.lookups[5][label] == track
        assert next(t for t in tracking.tracks if t.track == track).end == 5


def test_in_a_single_plane_a_disc_cut_in_two_is_one_track():
    whole = disks((32, 30), (32, 72), radius=8)
    cut = cut_in_two(whole[None], 1)[0]
    tracking = track_nuclei([whole, cut, cut, cut, whole], spacing=(1.0, 1.0))
    assert [(track.begin, track.end, track.parent) for track in tracking.tracks] == [(0, 4, 0)] * 2
