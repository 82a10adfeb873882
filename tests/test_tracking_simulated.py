"""Tracks of the shipped nucleus model on a simulated early recording (a seed never used in
training) in the Cell Tracking Challenge layout, scored with the challenge's measures."""

from __future__ import annotations

import json

import pytest

from bench.tracking import divisions_in, measure_recording
from devolearn_web.registry import ModelRegistry
from devolearn_web.training.simulator.ctc_recording import write_ctc_recording
from devolearn_web.training.simulator.held_out import TEST_SEEDS
from tests.conftest import REPOSITORY_ROOT

pytestmark = pytest.mark.slow  # three time points of 35 slices: about 30 s on 2 cores

# The targets (DET >= 0.95, TRA >= 0.90), and SEG a little under the measured 0.9.
MIN_DET, MIN_TRA, MIN_SEG = 0.95, 0.90, 0.80
# Measured: 1 division found for the 1 true (3 before nuclei cut in two were merged before
# linking). More than this many extra would mean cut nuclei read as divisions again.
MAX_EXTRA_DIVISIONS = 1


@pytest.fixture(scope="module")
def early_recording(tmp_path_factory):
    """Three minutes from the 6-cell stage of seed 2000: EMS divides into MS and E in it."""
    folder = tmp_path_factory.mktemp("ctc") / "early"
    write_ctc_recording(folder, TEST_SEEDS[0], cells=6, times=3)
    return folder


def test_the_recording_is_in_the_challenges_layout(early_recording):
    names = sorted(p.relative_to(early_recording).as_posix() for p in early_recording.rglob("*"))
    for expected in ("01/t000.tif", "01_GT/SEG/man_seg002.tif", "01_GT/TRA/man_track.txt"):
        assert expected in names
    info = json.loads((early_recording / "recording.json").read_text())
    assert info["true_counts"][0] == 6
    truth = (early_recording / "01_GT" / "TRA" / "man_track.txt").read_text()
    assert divisions_in(truth) >= 1  # the recording holds the division the tracker must find


def test_early_tracks_meet_the_targets(early_recording):
    measured = measure_recording(early_recording, ModelRegistry(REPOSITORY_ROOT / "models"))
    assert measured.det >= MIN_DET, measured
    assert measured.tra >= MIN_TRA, measured
    assert measured.seg >= MIN_SEG, measured
    assert 1 <= measured.found_divisions <= measured.true_divisions + MAX_EXTRA_DIVISIONS, measured
    assert (early_recording / "01_RES" / "res_track.txt").exists()
