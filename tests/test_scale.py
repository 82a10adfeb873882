"""The working grid of an upload whose embryo was not found: the frame is the only guide."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devolearn_web.scale import AUTOMATIC_SCALE, MIN_CANVAS_SIDE, GridCard, initial_grid

CARD = GridCard(
    aspect=1.383,
    embryo_length=128.0,
    diameter_median=14.1,
    diameter_low=7.0,
    diameter_high=43.5,
    um_per_px=0.237,
)


@pytest.mark.parametrize("shape", [(154, 430), (512, 708), (256, 256)])
def test_a_frame_without_an_embryo_keeps_the_trained_aspect_and_area(shape):
    """Squashed to a square, a tight crop's nuclei were stretched into stripes and cut up."""
    grid = initial_grid(np.zeros(shape, np.float32), CARD, AUTOMATIC_SCALE, None)
    assert grid.source == "frame" and not grid.transpose
    assert grid.scale_y / grid.scale_x == pytest.approx(CARD.aspect)
    assert grid.scale == pytest.approx(MIN_CANVAS_SIDE / math.sqrt(shape[0] * shape[1]))


def test_a_tall_frame_without_an_embryo_is_laid_along_x():
    """The frame's long side is taken for the embryo's long axis, as in training."""
    wide = initial_grid(np.zeros((154, 430), np.float32), CARD, AUTOMATIC_SCALE, None)
    tall = initial_grid(np.zeros((430, 154), np.float32), CARD, AUTOMATIC_SCALE, None)
    assert tall.transpose and not wide.transpose
    assert (tall.scale_x, tall.scale_y) == pytest.approx((wide.scale_x, wide.scale_y))
