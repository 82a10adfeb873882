"""No silent skips in CI: under CI=true a skipped test fails the run unless it is expected.

A skip that is fine on a laptop (a package or sample missing) hides a broken install on CI,
where `make test` installs everything: the run would be green with tests never run. The short
list below names the skips CI may meet, each with why; tests/conftest.py applies the rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "samples"


@dataclass(frozen=True)
class ExpectedSkip:
    """Skips whose reason holds `words` are expected on CI while `applies(config, nodeid)`."""

    words: str
    applies: Callable[[object, str], bool]
    why: str


def _training_deselected(config, nodeid: str) -> bool:
    return nodeid.startswith("tests/training/") and "not training" in (
        config.getoption("markexpr", "") or ""
    )


EXPECTED_CI_SKIPS = (
    ExpectedSkip(
        words="shared/samples",
        applies=lambda config, nodeid: not SAMPLES_DIR.is_dir(),
        why="CI tests a clean clone: the real microscope samples live beside the repository "
        "in ../shared/samples, not in it (their licence keeps them out of git)",
    ),
    ExpectedSkip(
        words="could not import",
        applies=_training_deselected,
        why="make test-fast (-m 'not training') runs without requirements-training.txt: a "
        "training module that imports PyTorch skips at import, before the marker deselects it",
    ),
)


def running_on_ci() -> bool:
    """True where the environment says CI (GitHub Actions and most others set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unexpected_skip(
    reason: str,
    config=None,
    nodeid: str = "",
    expected: tuple[ExpectedSkip, ...] = EXPECTED_CI_SKIPS,
) -> bool:
    """True when a skip with this reason is on no expected entry that applies now."""
    return not any(entry.words in reason and entry.applies(config, nodeid) for entry in expected)


def skip_reason(longrepr: object) -> str:
    """The reason of a skipped report: pytest keeps it as (path, line, 'Skipped: reason')."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_if_unexpected(report, config) -> None:
    """Turn a skipped test or module report into a failure when CI must not accept it."""
    if not (report.skipped and running_on_ci()) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report.longrepr)
    if unexpected_skip(reason, config, report.nodeid):
        report.outcome = "failed"
        report.longrepr = (
            f"Skipped under CI=true, and this skip is not in tests/ci_skips.py "
            f"EXPECTED_CI_SKIPS: {reason}"
        )
