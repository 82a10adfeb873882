"""Founder names on the simulator's own tracks (true names known), and where they are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.founders import Tally, truth_run
from devolearn_web.founders import build_cells, name_founders
from devolearn_web.tracking import Track
from devolearn_web.training.simulator.ctc_recording import truth_tracking
from devolearn_web.training.simulator.embryo import simulate_embryo

# Measured (docs/tracking.md, 30 seeds per row): no wrong name in any of 360 recordings. The
# tolerance is the target: names right on at least 95% of recordings.
MIN_CLEAN_SHARE = 0.95
# 100 time points from the 4-cell stage name 296 of 300 founders present; 40 of them, 48%.
MIN_COVERAGE_LONG = 0.9
SEEDS = range(2000, 2006)


@pytest.mark.parametrize(("start", "times"), [(1, 40), (2, 40), (4, 100)])
def test_founders_are_named_right_on_simulated_recordings(start, times):
    tally = Tally()
    for seed in SEEDS:
        tally.add(*truth_run(seed, start, times))
    assert tally.right > 0
    assert tally.clean / tally.recordings >= MIN_CLEAN_SHARE, tally
    assert tally.wrong <= (1 - MIN_CLEAN_SHARE) * (tally.right + tally.wrong), tally
    if times >= 100:
        assert tally.right / tally.founders >= MIN_COVERAGE_LONG, tally


def test_a_long_recording_from_four_cells_names_every_founder_seen():
    names, truth, _ = truth_run(2000, 4, 100)
    given = {names[label]: truth[label] for label in names}
    expected = {"ABa", "ABp", "EMS", "P2", "MS", "E", "C", "P3", "D", "P4"}
    assert expected <= set(given)
    assert all(name == true for name, true in given.items())


def test_a_recording_starting_at_20_cells_gets_no_names_and_says_why():
    embryo = simulate_embryo(2001)
    tracks, positions, truth = truth_tracking(embryo, 20, 5)
    assert len([t for t in tracks if t.begin == 0]) >= 20
    naming = name_founders(tracks, positions)
    assert naming.names == {}
    assert "starts at" in naming.note and "4 cells or fewer" in naming.note


def test_names_do_not_depend_on_how_the_embryo_lies():
    embryo = simulate_embryo(2002)
    first = name_founders(*truth_tracking(embryo, 4, 70, np.random.default_rng(1))[:2])
    turned = name_founders(*truth_tracking(embryo, 4, 70, np.random.default_rng(7))[:2])
    assert first.names and first.names == turned.names


def test_too_few_divisions_leave_names_out_and_say_which():
    # Two nuclei, one divides: AB (16 min) and P1 (17 min) fit it about equally well.
    tracks = [Track(1, 0, 5, 0), Track(2, 0, 9, 0), Track(3, 6, 9, 1), Track(4, 6, 9, 1)]
    positions = [{1: (0, 0, 0), 2: (0, 0, 10)} for _ in range(10)]
    naming = name_founders(tracks, positions)
    assert "AB" not in naming.names.values()
    assert "Not told apart" in naming.note or "No founder names" in naming.note


def test_a_stub_daughter_is_not_read_as_a_birth():
    # Track 1 "divides" into 2 (lasts one time point, then vanishes) and 3 (the same nucleus).
    tracks = [Track(1, 0, 3, 0), Track(2, 4, 4, 1), Track(3, 4, 9, 1)]
    (cell,) = build_cells(tracks, last_time=9)
    assert cell.tracks == [1, 3] and not cell.divided and cell.end == 9


def test_a_division_shifted_far_from_its_time_gives_no_names_and_says_which():
    # The simulator's tracks from 4 cells, with EMS's division moved 12 minutes earlier (as a
    # nucleus cut in two long before it divides would): the tree fits no naming's timing.
    tracks, positions, truth = truth_tracking(simulate_embryo(2003), 4, 70)
    assert name_founders(tracks, positions).names
    ems = next(track for track in tracks if truth[track.track] == "EMS")
    early = ems.end - 12
    moved = [
        dataclasses.replace(track, end=early)
        if track is ems
        else dataclasses.replace(track, begin=early + 1)
        if track.parent == ems.track
        else track
        for track in tracks
    ]
    positions = [dict(moment) for moment in positions]
    for moment in positions[early + 1 : ems.end + 1]:
        centre = np.asarray(moment.pop(ems.track))
        for side, daughter in zip(
            (-0.5, 0.5), [t for t in moved if t.parent == ems.track], strict=True
        ):
            moment[daughter.track] = centre + side
    naming = name_founders(moved, positions)
    assert naming.names == {}
    assert "do not fit" in naming.note and "EMS" in naming.note
