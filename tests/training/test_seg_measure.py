"""The Cell Tracking Challenge SEG measure, IoU/Dice tallies and count errors on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devolearn_web.training.metrics import (
    OverlapTally,
    count_error_percent,
    count_objects,
    seg_measure,
    seg_scores,
)

pytestmark = pytest.mark.training


def labels_from(rows: list[str]) -> np.ndarray:
    """A label map drawn as text: '.' is background, a digit is that label."""
    return np.array([[0 if ch == "." else int(ch) for ch in row] for row in rows], dtype=np.int32)


def test_identical_objects_score_one():
    reference = labels_from(["11..", "11.2", "...2"])
    assert seg_measure(reference, reference) == 1.0


def test_label_numbers_do_not_matter():
    reference = labels_from(["11..", "11.2", "...2"])
    renumbered = np.where(reference == 1, 7, np.where(reference == 2, 3, 0))
    assert seg_measure(reference, renumbered) == 1.0


def test_half_covered_object_is_not_matched():
    # R has 4 pixels; S covers exactly 2 of them: |R ∩ S| = 0.5 |R| is not more than half.
    reference = labels_from(["1111"])
    predicted = labels_from(["22.."])
    assert seg_scores(reference, predicted).tolist() == [0.0]


def test_more_than_half_scores_jaccard():
    # R: 4 pixels, S: 3 of them plus 2 outside -> |R ∩ S| = 3, |R ∪ S| = 6.
    reference = labels_from(["1111.."])
    predicted = labels_from([".55555"])
    assert seg_scores(reference, predicted).tolist() == pytest.approx([3 / 6])
    # The best-overlapping S decides, even when several predicted objects touch R.
    predicted = labels_from(["6555.."])
    assert seg_scores(reference, predicted).tolist() == pytest.approx([3 / 4])


def test_merged_prediction_matches_both_references_with_their_own_scores():
    # Two 2-pixel references merged into one 5-pixel prediction: each is fully covered.
    reference = labels_from(["11.22"])
    predicted = labels_from(["33333"])
    assert seg_scores(reference, predicted).tolist() == pytest.approx([2 / 5, 2 / 5])


def test_missed_object_scores_zero_and_counts_in_the_mean():
    reference = labels_from(["11..22"])
    predicted = labels_from(["11...."])
    assert seg_scores(reference, predicted).tolist() == [1.0, 0.0]
    assert seg_measure(reference, predicted) == 0.5


def test_extra_predictions_cost_nothing():
    # SEG is a mean over reference objects: false positives do not lower it.
    reference = labels_from(["11...."])
    predicted = labels_from(["11..33"])
    assert seg_measure(reference, predicted) == 1.0


def test_empty_prediction_scores_zero_and_empty_reference_is_nan():
    reference = labels_from(["11.2"])
    assert seg_scores(reference, np.zeros_like(reference)).tolist() == [0.0, 0.0]
    assert math.isnan(seg_measure(np.zeros_like(reference), reference))


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="shapes differ"):
        seg_scores(np.zeros((2, 2), np.int32), np.zeros((2, 3), np.int32))


def test_overlap_tally_pools_pixels_over_images():
    tally = OverlapTally()
    tally.add(np.array([True, True, False]), np.array([True, False, False]))
    tally.add(np.array([False, False]), np.array([True, False]))
    # intersection 1, predicted 2, reference 2
    assert tally.iou == pytest.approx(1 / 3)
    assert tally.dice == pytest.approx(2 / 4)
    assert OverlapTally().iou == 1.0


def test_counts_and_count_error():
    labels = labels_from(["11.2", "11.3"])
    assert count_objects(labels) == 3
    assert count_objects(labels, min_area=2) == 1
    assert count_error_percent(9, 10) == pytest.approx(10.0)
    assert math.isnan(count_error_percent(3, 0))


def test_seg_is_reported_by_reference_area():
    from devolearn_web.training.metrics import reference_areas, seg_by_area

    reference = np.zeros((40, 40), np.int32)
    reference[0:3, 0:5] = 7  # 15 px
    reference[10:20, 10:20] = 3  # 100 px
    predicted = np.zeros_like(reference)
    predicted[10:20, 10:20] = 1  # the big one found exactly, the small one missed
    scores, areas = seg_scores(reference, predicted), reference_areas(reference)
    assert areas.tolist() == [100, 15]  # label order, as seg_scores scores them
    assert seg_by_area(scores, areas) == {
        "0-20 px": {"objects": 1, "seg": 0.0},
        "100-200 px": {"objects": 1, "seg": 1.0},
    }
