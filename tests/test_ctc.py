"""The challenge's result layout: a track bridged over a gap is written as two tracks."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import tifffile

from devolearn_web.ctc import ctc_zip
from devolearn_web.tracking import Track


def test_a_track_with_a_gap_continues_as_a_daughter_track():
    seen = np.zeros((8, 8), dtype=np.uint32)
    seen[2:4, 2:4] = 1
    seen[5:7, 5:7] = 2
    only_two = np.where(seen == 2, 2, 0).astype(np.uint32)
    # Track 1 is missed at time 1 (gap closing kept it one track); track 2 divides into 3 and 4.
    divided = np.where(seen == 1, 1, 0).astype(np.uint32)
    divided[5, 5], divided[6, 6] = 3, 4
    volumes = [seen, only_two, divided]
    tracks = [Track(1, 0, 2, 0), Track(2, 0, 1, 0), Track(3, 2, 2, 2), Track(4, 2, 2, 2)]
    bundle = zipfile.ZipFile(io.BytesIO(ctc_zip(volumes, tracks)))
    lines = sorted(bundle.read("res_track.txt").decode().splitlines())
    assert lines == ["1 0 0 0", "2 0 1 0", "3 2 2 2", "4 2 2 2", "5 2 2 1"]
    last = tifffile.imread(io.BytesIO(bundle.read("mask002.tif")))
    assert set(np.unique(last)) == {0, 3, 4, 5}
    assert volumes[2].max() == 4  # the caller's labels are left as they were


def test_founder_names_ride_beside_res_track_and_follow_a_track_over_its_gap():
    seen = np.zeros((8, 8), dtype=np.uint32)
    seen[2:4, 2:4] = 1
    seen[5:7, 5:7] = 2
    only_two = np.where(seen == 2, 2, 0).astype(np.uint32)
    tracks = [Track(1, 0, 2, 0), Track(2, 0, 2, 0)]
    names = {1: "AB", 2: "P1"}
    bundle = zipfile.ZipFile(io.BytesIO(ctc_zip([seen, only_two, seen], tracks, names)))
    # res_track.txt stays four numbers per line, as the challenge's tools read it.
    for line in bundle.read("res_track.txt").decode().splitlines():
        assert len(line.split()) == 4 and all(part.isdigit() for part in line.split())
    listed = bundle.read("founder_names.txt").decode().splitlines()
    assert sorted(listed) == ["1 AB", "2 P1", "3 AB"]  # 3: AB after the gap at time 1
    unnamed = zipfile.ZipFile(io.BytesIO(ctc_zip([seen], [Track(1, 0, 0, 0)])))
    assert "founder_names.txt" not in unnamed.namelist()
