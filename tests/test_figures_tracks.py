"""The tracks' figures: time points counted from 1 on whole ticks, founder names on the tree,
and a 3D box that stays a box when every nucleus lies in one slice."""

from __future__ import annotations

from devolearn_web.figures_tracks import (
    founder_counts_figure,
    lineage_tree_figure,
    nuclei_3d_figure,
    nuclei_over_time_figure,
)
from devolearn_web.tracking import Track

TRACKS = [Track(1, 0, 1, 0), Track(2, 0, 3, 0), Track(3, 2, 3, 1), Track(4, 2, 3, 1)]


def _whole_ticks_from_one(axis: dict) -> None:
    assert axis["tickmode"] == "linear" and axis["tick0"] == 1
    assert isinstance(axis["dtick"], int) and axis["dtick"] >= 1


def test_the_tree_counts_time_points_from_one_on_whole_ticks():
    figure = lineage_tree_figure(TRACKS)
    lines, markers = figure["data"]
    assert min(y for y in lines["y"] if y is not None) == 1
    assert max(y for y in lines["y"] if y is not None) == 4
    _whole_ticks_from_one(figure["layout"]["yaxis"])
    hover = {row[0]: row for row in markers["customdata"]}
    assert hover[1][1:3] == [1, 2]  # track 1: born at time point 1, divides at 2 (0-based 0, 1)


def test_the_tree_shows_founder_names_as_labels_and_in_the_hover():
    figure = lineage_tree_figure(TRACKS, names={1: "AB", 2: "P1"})
    markers = figure["data"][1]
    assert markers["text"] == ["AB", "P1", "", ""]
    assert "customdata[5]" in markers["hovertemplate"]
    assert [row[5] for row in markers["customdata"]] == ["AB", "P1", "not named", "not named"]


def test_nuclei_over_time_count_time_points_from_one():
    figure = nuclei_over_time_figure([2, 2, 3, 3])
    assert figure["data"][0]["x"] == [1, 2, 3, 4]
    _whole_ticks_from_one(figure["layout"]["xaxis"])
    assert nuclei_over_time_figure(list(range(95)))["layout"]["xaxis"]["dtick"] == 10


def test_nuclei_all_in_one_slice_still_get_a_deep_box():
    objects = [
        {"label": i, "x_um": 5.0 * i, "y_um": 3.0 * i, "z_um": 4.0, "volume_um3": 10.0}
        for i in range(1, 6)
    ]
    scene = nuclei_3d_figure(objects)["layout"]["scene"]
    assert scene["aspectmode"] == "manual"
    ratio = scene["aspectratio"]
    assert ratio["x"] == 1.0 and ratio["z"] >= 0.25
    uncalibrated = [{"label": 1, "x": 1, "y": 2, "z": 0, "volume": 3}]
    assert nuclei_3d_figure(uncalibrated)["layout"]["scene"]["aspectmode"] == "cube"


def test_the_figure_draws_the_tree_solid_and_the_model_dashed_per_lineage():
    rows = [
        {"t": 0, "tree": {"A": 2, "E": 1, "P": 1, "M": 0}, "model": {"A": 3, "E": 1, "P": 1}},
        {"t": 1, "tree": {"A": 4, "E": None, "P": 1, "M": None}, "model": None},
    ]
    figure = founder_counts_figure(rows)
    shown = {trace["legendgroup"] for trace in figure["data"]}
    assert shown == {"A", "E", "P"}  # M is zero or unknown throughout: left out
    for key in shown:
        dashes = sorted(t["line"]["dash"] for t in figure["data"] if t["legendgroup"] == key)
        assert dashes == ["dash", "solid"]
    solid_a = next(t for t in figure["data"] if t["name"] == "A (tree)")
    assert solid_a["x"] == [1, 2] and solid_a["y"] == [2, 4]
