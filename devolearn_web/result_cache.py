"""The network's output of a recent answer, held in this worker's memory for a few minutes so
that a new threshold, a minimum size, an excluded object or a download needs neither the file
again nor a new network run.

What is held: for segmentation, each frame's probability map on the working grid (float32,
the network's output, not the upload's pixels) with the grid's geometry; for lineage, the
counts. Never the upload, its decoded pixels or its picture; never on disk. An entry is
dropped RESULT_CACHE_SECONDS after its last use, or earlier when the cache is over
RESULT_CACHE_MB (oldest first). Its bytes are counted in the worker's memory budget
(devolearn_web.admission) and only taken when spare there, so it never makes a run wait.

Each gunicorn worker has its own cache: a request that lands on another worker, or comes
after the entry was dropped, gets a 410 and the page sends the file again (api.js).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app

from devolearn_web.admission import EXTENSION_KEY as BUDGET_KEY
from devolearn_web.admission import MB, MemoryBudget, Reservation
from devolearn_web.calibration import Calibration
from devolearn_web.errors import DevoLearnError
from devolearn_web.pipelines import LineageResult, NetworkOutput

EXTENSION_KEY = "devolearn_result_cache"
DEFAULT_SECONDS = 600


class ResultGone(DevoLearnError):
    """410: the result id is unknown here (expired, dropped, or held by another worker)."""

    status = 410


@dataclass(frozen=True)
class StackFacts:
    """What a stack's answer and downloads say of the stack itself (no pixels)."""

    kind: str
    axes: dict
    width: int
    height: int
    count: int
    positions: tuple[dict, ...]
    notes: tuple[str, ...]
    calibration: Calibration | None
    frame_axis: str


@dataclass
class HeldResult:
    """One answer's network output: segmentation maps or lineage counts, per frame."""

    model: str
    task: str
    stem: str  # the download files' name stem
    threshold: float | None = None  # the first answer's (segmentation)
    outputs: list[NetworkOutput] = field(default_factory=list)
    lineage: list[LineageResult] = field(default_factory=list)
    stack: StackFacts | None = None  # None for a single image

    @property
    def nbytes(self) -> int:
        return sum(output.nbytes for output in self.outputs) + 4096 * (1 + len(self.lineage))


class ResultCache:
    """Held results by random id, dropped after `seconds` unused or when over `capacity`."""

    def __init__(
        self,
        capacity_bytes: int,
        seconds: float,
        budget: MemoryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = int(capacity_bytes)
        self.budget = budget
        self.seconds = float(seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[HeldResult, Reservation | None, float]] = (
            OrderedDict()
        )

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(held.nbytes for held, _, _ in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def put(self, held: HeldResult) -> str | None:
        """Hold `held`; its id, or None when it does not fit (then nothing is held)."""
        size = held.nbytes
        if size > self.capacity:
            return None
        with self._lock:
            self._expire()
            while self._entries and self._used() + size > self.capacity:
                self._drop(next(iter(self._entries)))
            budget = self.budget
            reservation = None
            if budget is not None:
                reservation = budget.try_reserve(size, "a held result")
                while reservation is None and self._entries:
                    self._drop(next(iter(self._entries)))
                    reservation = budget.try_reserve(size, "a held result")
                if reservation is None:
                    return None
            key = secrets.token_urlsafe(16)
            self._entries[key] = (held, reservation, self._clock() + self.seconds)
            return key

    def get(self, key: str) -> HeldResult:
        """The held result (its time renewed), or ResultGone."""
        with self._lock:
            self._expire()
            entry = self._entries.get(key)
            if entry is None:
                raise ResultGone(
                    "That result is no longer held here (results are held for "
                    f"{self.seconds / 60:g} minutes after their last use, in one server "
                    "process): send the file again."
                )
            held, reservation, _ = entry
            self._entries[key] = (held, reservation, self._clock() + self.seconds)
            self._entries.move_to_end(key)
            return held

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key)

    def _used(self) -> int:
        return sum(held.nbytes for held, _, _ in self._entries.values())

    def _expire(self) -> None:
        now = self._clock()
        for key in [key for key, (_, _, until) in self._entries.items() if until <= now]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        _, reservation, _ = self._entries.pop(key)
        if reservation is not None:
            reservation.release()


def get_result_cache() -> ResultCache | None:
    """The current app's cache; None when it is off (RESULT_CACHE_MB=0)."""
    return current_app.extensions.get(EXTENSION_KEY)


def init_app(app: Flask) -> None:
    """A cache of RESULT_CACHE_MB for RESULT_CACHE_SECONDS in this process (none when 0)."""
    capacity = float(app.config["RESULT_CACHE_MB"]) * MB
    if capacity > 0:
        seconds = float(app.config.get("RESULT_CACHE_SECONDS", DEFAULT_SECONDS))
        budget = app.extensions.get(BUDGET_KEY)  # admission.init_app runs first
        app.extensions[EXTENSION_KEY] = ResultCache(capacity, seconds, budget)
