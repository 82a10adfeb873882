"""Timing summaries and the alternating runner that measures baseline and candidate side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A pause between two timed calls, so one side's idle thread pools (ONNX Runtime spins for a
# while after a run) never eat into the next side's measurement.
SETTLE_SECONDS = 0.02


@dataclass(frozen=True)
class Summary:
    """Milliseconds (or any unit) of repeated measurements: median, 95th percentile, count."""

    median: float
    p95: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The summary of at least one value."""
        if not values:
            raise ValueError("no measurements to summarise")
        ordered = sorted(values)
        return cls(statistics.median(ordered), percentile(ordered, 95.0), len(ordered))


def percentile(values: Sequence[float], percent: float) -> float:
    """Linear-interpolated percentile (numpy's default) of a non-empty sequence."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100.0
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def time_call(function: Callable[[], object]) -> float:
    """Milliseconds one call takes (wall clock)."""
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def alternate(
    contenders: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    settle_seconds: float = SETTLE_SECONDS,
) -> dict[str, Summary]:
    """Time each contender `repeats` times, interleaved round by round, after `warmup` rounds.

    Interleaving spreads the machine's drift (other processes, thermal state) over every
    contender alike, so their ratio means something even on a noisy shared machine.
    """
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(warmup + repeats):
        for name, function in contenders.items():
            elapsed = time_call(function)
            if round_index >= warmup:
                timings[name].append(elapsed)
            if settle_seconds:
                time.sleep(settle_seconds)
    return {name: Summary.of(values) for name, values in timings.items()}
