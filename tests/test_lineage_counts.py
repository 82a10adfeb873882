"""Lineage counts from scaled outputs, with and without a card's calibration curves."""

from __future__ import annotations

import numpy as np
import pytest

from devolearn_web.lineage_counts import calibration_problem, lineage_counts

LINEAGES = ["A", "E"]
MAXIMA = [250, 16]


def test_without_calibration_counts_are_rounded_scaled_outputs():
    scaled = np.array([[0.5, 13.4 / 16], [-0.1, 0.0]])
    np.testing.assert_array_equal(lineage_counts(scaled, LINEAGES, MAXIMA), [[125, 13], [0, 0]])


def test_a_curve_maps_the_network_count_and_holds_its_ends():
    curve = {"network": [1.0, 8.0, 13.0], "count": [1.0, 8.0, 16.0]}
    calibration = {"knots": {"E": curve}}
    scaled = np.array([[0.5, 13.4 / 16], [0.5, 10.5 / 16], [0.5, 0.0]])
    counts = lineage_counts(scaled, LINEAGES, MAXIMA, calibration)
    # A has no curve and is read as before; E 13.4 is past the last knot, 10.5 half-way up.
    np.testing.assert_array_equal(counts, [[125, 16], [125, 12], [125, 1]])


def test_counts_of_a_batch_keep_its_shape():
    scaled = np.full((4, 3, 2), 0.5)
    counts = lineage_counts(scaled, LINEAGES, MAXIMA, {"knots": {}})
    assert counts.shape == (4, 3, 2) and counts.dtype == np.int64


def test_a_sound_calibration_has_no_problem():
    curve = {"network": [0.0, 2.0], "count": [0.0, 2.5]}
    assert calibration_problem({"method": "isotonic", "knots": {"E": curve}}, LINEAGES) is None


@pytest.mark.parametrize(
    ("calibration", "words"),
    [
        ([1, 2], "must be an object"),
        ({"knots": {"X": {"network": [0, 1], "count": [0, 1]}}}, "lineage names"),
        ({"knots": {"E": {"network": [0, 1, 1], "count": [0, 1, 2]}}}, "increase strictly"),
        ({"knots": {"E": {"network": [0, 1], "count": [2, 1]}}}, "must not decrease"),
        ({"knots": {"E": {"network": [0, 1], "count": [0]}}}, "same length"),
        ({"knots": {"E": {"network": ["a", "b"], "count": [0, 1]}}}, "lists of numbers"),
        ({"knots": {"E": {"network": [0, float("nan")], "count": [0, 1]}}}, "finite"),
    ],
)
def test_broken_calibrations_are_explained(calibration, words):
    assert words in calibration_problem(calibration, LINEAGES)
