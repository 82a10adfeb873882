"""Warnings a first-time visitor's own images call for (found walking through the pages)."""

from __future__ import annotations

import numpy as np
import pytest

from devolearn_web.imaging import decode_image
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry

CUT_OFF = "reaches the edge of the image"


@pytest.fixture
def registry(tiny_models_dir):
    return ModelRegistry(tiny_models_dir)


def _decoded(image_maker, pixels: np.ndarray):
    return decode_image(image_maker.encode(image_maker.uint8(pixels)))


def test_a_cut_off_embryo_is_warned_about_on_the_lineage_model(registry, image_maker):
    """A crop through the embryo read as '93 cells in all' with no word of doubt."""
    whole = image_maker.disks((140, 200), image_maker.five_disks, 12)
    cut = whole[:, 25:]  # the left column of nuclei cut through
    assert not any(
        CUT_OFF in text
        for text in predict(registry, "lineage", _decoded(image_maker, whole)).warnings
    )
    warnings = predict(registry, "lineage", _decoded(image_maker, cut)).warnings
    assert any(CUT_OFF in text and "whole embryo" in text for text in warnings), warnings


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_a_cut_off_embryo_is_no_warning_for_segmentation(registry, image_maker, name):
    """Outlining the nuclei or cells of a crop is a fair use of the segmentation models."""
    cut = image_maker.disks((140, 200), image_maker.five_disks, 12)[:, 25:]
    assert not any(
        CUT_OFF in text for text in predict(registry, name, _decoded(image_maker, cut)).warnings
    )


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_a_blank_image_is_not_called_the_other_kind(registry, image_maker, name):
    """A blank frame on the membrane page was said to 'show solid bright blobs'."""
    warnings = predict(registry, name, _decoded(image_maker, np.zeros((200, 200)))).warnings
    assert any("uniform" in text for text in warnings), warnings
    assert not any("it looks like" in text for text in warnings), warnings
