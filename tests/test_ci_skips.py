"""The CI skip rule: a skip fails the run under CI=true unless it is expected and applies."""

from __future__ import annotations

import pytest
from ci_skips import EXPECTED_CI_SKIPS, ExpectedSkip, skip_reason, unexpected_skip

SAMPLES_ABSENT = ExpectedSkip("shared/samples", lambda config, nodeid: True, "none in a clone")
SAMPLES_PRESENT = ExpectedSkip("shared/samples", lambda config, nodeid: False, "none in a clone")


@pytest.mark.parametrize(
    "reason, expected, unexpected",
    [
        ("real sample x.png not found in /w/shared/samples", (SAMPLES_ABSENT,), False),
        # The samples are there, so a test skipping for them has a bug: not accepted.
        ("real sample x.png not found in /w/shared/samples", (SAMPLES_PRESENT,), True),
        ("could not import 'onnx': No module named 'onnx'", (SAMPLES_ABSENT,), True),
        ("anything", (), True),
    ],
)
def test_a_skip_is_accepted_only_when_expected_and_applying(reason, expected, unexpected):
    assert unexpected_skip(reason, expected=expected) is unexpected


class Options:
    """A stand-in for pytest's config, with the -m expression given."""

    def __init__(self, markexpr: str) -> None:
        self.markexpr = markexpr

    def getoption(self, name: str, default=None):
        return self.markexpr if name == "markexpr" else default


@pytest.mark.parametrize(
    "markexpr, nodeid, unexpected",
    [
        ("not browser and not training", "tests/training/test_warm_start.py", False),
        ("", "tests/training/test_warm_start.py", True),  # make test installs PyTorch
        ("not browser and not training", "tests/test_figures.py", True),
    ],
)
def test_a_training_module_may_skip_at_import_only_when_training_is_deselected(
    markexpr, nodeid, unexpected
):
    reason = "could not import 'torch': No module named 'torch'"
    assert unexpected_skip(reason, Options(markexpr), nodeid) is unexpected


def test_the_expected_list_is_short_and_says_why():
    assert 0 < len(EXPECTED_CI_SKIPS) <= 5
    for entry in EXPECTED_CI_SKIPS:
        assert entry.words and len(entry.why) > 20


def test_the_reason_is_read_from_pytests_report():
    assert skip_reason(("t.py", 3, "Skipped: no samples")) == "no samples"
