"""The predict options, parsed and checked once (devolearn_web.options)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from devolearn_web.errors import BadParameter
from devolearn_web.options import PredictOptions
from devolearn_web.pipelines import ObjectFilter


def test_options_made_in_code_check_the_threshold_as_the_form_does():
    # The CLI builds its options directly: the one threshold rule still applies.
    with pytest.raises(BadParameter, match="between 0 and 1; 1.5 is not"):
        PredictOptions(threshold=1.5)
    assert PredictOptions(threshold=0.25).threshold == 0.25


def test_a_form_becomes_typed_options():
    form = MultiDict(
        {"threshold": "0.3", "format": "CSV", "include": "figures", "channel": "1", "frame": "2"}
    )
    options = PredictOptions.from_form(form)
    assert (options.threshold, options.format, options.figures) == (0.3, "csv", True)
    assert (options.channel, options.frame, options.streamed) == (1, 2, False)


def test_a_negative_frame_is_refused_before_the_upload_is_read():
    with pytest.raises(BadParameter, match="Frame -1 does not exist"):
        PredictOptions.from_form(MultiDict({"frame": "-1"}))


def test_excluded_points_are_parsed_once_and_checked_against_the_frames():
    options = PredictOptions.from_form(MultiDict({"exclude": "3,4;5,6,1", "min_area": "2"}))
    with pytest.raises(BadParameter, match="give each excluded point its frame"):
        options.filters(3)
    with pytest.raises(BadParameter, match="names a frame that does not exist"):
        PredictOptions.from_form(MultiDict({"exclude": "5,6,7"})).filters(3)
    filters = PredictOptions.from_form(MultiDict({"exclude": "5,6,1"})).filters(3)
    assert filters[1] == ObjectFilter(0.0, ((5.0, 6.0),)) and filters[-1] == ObjectFilter()
