"""Per-founder counts from the named tree: right on the simulator's own tracks, null (with the
reason) where the founders are not named."""

from __future__ import annotations

import numpy as np
import pytest

from devolearn_web.catalogue import LINEAGE_ORDER
from devolearn_web.founder_counts import founder_counts_csv, tree_counts, tree_counts_note
from devolearn_web.founders import name_founders
from devolearn_web.tracking import Track
from devolearn_web.training.simulator.ctc_recording import truth_tracking
from devolearn_web.training.simulator.embryo import simulate_embryo
from devolearn_web.training.simulator.lineage import count_by_lineage


def _true_populations(embryo, start: int, times: int) -> list[dict[str, int]]:
    """The simulator's populations at each time point of truth_tracking's recording."""
    first = embryo.time_index(embryo.grid_time_with_total(start))
    last = len(embryo.times) - 1
    return [
        count_by_lineage(embryo.cells.letters, embryo.alive_ids[min(first + t, last)])
        for t in range(times)
    ]


@pytest.mark.parametrize(("seed", "start", "times"), [(2000, 4, 100), (2001, 1, 40), (2002, 2, 70)])
def test_tree_counts_equal_the_simulators_populations_for_named_founders(seed, start, times):
    embryo = simulate_embryo(seed)
    tracks, positions, _ = truth_tracking(embryo, start, times, np.random.default_rng(seed))
    naming = name_founders(tracks, positions)
    assert naming.names
    rows, _ = tree_counts(tracks, naming.names, times)
    truth = _true_populations(embryo, start, times)
    counted = 0
    for row, true in zip(rows, truth, strict=True):
        for key in LINEAGE_ORDER:
            if row[key] is not None:
                assert row[key] == true[key], (key, row, true)
                counted += 1
    assert counted >= 3 * times  # A, and more, counted at every time point


def test_a_long_recording_from_four_cells_counts_every_lineage_throughout():
    embryo = simulate_embryo(2000)
    tracks, positions, _ = truth_tracking(embryo, 4, 100)
    rows, unknown = tree_counts(tracks, name_founders(tracks, positions).names, 100)
    assert unknown == []
    assert rows[-1] == _true_populations(embryo, 4, 100)[-1]
    assert rows[-1]["M"] > 0 and rows[-1]["D"] > 0


def test_unnamed_daughters_of_ems_leave_e_and_m_null_but_not_a():
    # 40 time points from 4 cells: EMS divides, but MS and E are not told apart yet.
    embryo = simulate_embryo(2000)
    tracks, positions, _ = truth_tracking(embryo, 4, 40)
    naming = name_founders(tracks, positions)
    rows, unknown = tree_counts(tracks, naming.names, 40)
    assert "E" in unknown and "M" in unknown and "A" not in unknown
    assert rows[0]["E"] == 1 and rows[0]["M"] == 0  # EMS, still undivided, counts as E
    assert rows[-1]["E"] is None and rows[-1]["A"] == _true_populations(embryo, 4, 40)[-1]["A"]


def test_a_recording_past_four_cells_gives_null_tree_counts_and_says_why():
    embryo = simulate_embryo(2001)
    tracks, positions, _ = truth_tracking(embryo, 20, 5)
    naming = name_founders(tracks, positions)
    rows, unknown = tree_counts(tracks, naming.names, 5)
    assert all(value is None for row in rows for value in row.values())
    assert unknown == list(LINEAGE_ORDER)
    note = tree_counts_note(unknown, naming.note, bool(naming.names))
    assert "null" in note and "4 cells or fewer" in note


def test_the_csv_leaves_unknown_counts_empty():
    rows = [{"t": 0, "tree": dict.fromkeys(LINEAGE_ORDER, None), "model": None}]
    header, line = founder_counts_csv(rows).splitlines()
    assert header.startswith("t,tree_A,") and line == "0" + "," * 14


def test_a_nucleus_cut_in_two_is_not_counted():
    # Track 1 "divides" into 2 (lasts one time point, then vanishes) and 3 (the same nucleus).
    tracks = [Track(1, 0, 3, 0), Track(2, 4, 4, 1), Track(3, 4, 9, 1)]
    rows, unknown = tree_counts(tracks, {1: "AB", 3: "AB"}, 10)
    assert unknown == []
    assert [row["A"] for row in rows] == [1] * 10


def test_the_models_estimates_stop_at_the_requests_deadline(tiny_models_dir):
    from devolearn_web.budget import Deadline
    from devolearn_web.errors import TookTooLong
    from devolearn_web.founder_counts import model_estimates
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.stacks import FrameStack

    frames = FrameStack("stack", np.zeros((2, 32, 32), np.uint8), ({"time": 0}, {"time": 1}), {})
    spent = Deadline(1.0, clock=iter([0.0] + [5.0] * 50).__next__)
    with pytest.raises(TookTooLong):
        model_estimates(ModelRegistry(tiny_models_dir), frames, spent)
