"""A per-request time budget: checked between pipeline stages, and an alarm that stops a model run.

Why: a platform router (Heroku's answers H12 after 30 s) or gunicorn's worker timeout would
otherwise end an over-long job by cutting the connection or killing the worker, and the visitor
would get a proxy's error page instead of a sentence. With a budget shorter than those limits the
job stops itself and answers a clear 503. ONNX Runtime checks its RunOptions.terminate flag
between graph nodes, so a run is stopped within one node of the deadline; NumPy/SciPy stages
cannot be interrupted, so the budget is checked before each of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from devolearn_web.errors import TookTooLong


class Deadline:
    """The moment a request's work must stop; seconds=None or <= 0 means no budget."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds if seconds and seconds > 0 else None
        self._clock = clock
        self._ends_at = clock() + self.seconds if self.seconds else math.inf

    def remaining(self) -> float:
        """Seconds left (math.inf without a budget; 0 once it has passed)."""
        return max(0.0, self._ends_at - self._clock())

    def expired(self) -> bool:
        """True once the budget is spent."""
        return self.remaining() <= 0.0

    def check(self, next_stage: str) -> None:
        """Raise TookTooLong when the budget is spent, before starting next_stage."""
        if self.expired():
            raise self.exceeded(next_stage)

    def exceeded(self, stage: str) -> TookTooLong:
        """The error for a job stopped while (or before) doing stage."""
        return TookTooLong(
            f"The analysis was stopped while {stage}: it took longer than the "
            f"{self.seconds:g} seconds this server allows for one image. A smaller image (fewer "
            "pixels) is analysed faster; very large images are best analysed with the DevoLearn "
            "Python package on your own computer."
        )

    @contextmanager
    def alarm(self, on_expiry: Callable[[], None]) -> Iterator[None]:
        """Call on_expiry from a timer thread if the budget runs out inside the with-block."""
        if self.seconds is None:
            yield
            return
        timer = threading.Timer(self.remaining(), on_expiry)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


NO_DEADLINE = Deadline(None)
