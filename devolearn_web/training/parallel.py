"""Run independent jobs in worker processes, results in the order of the jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Result = TypeVar("Result")
Row = TypeVar("Row")


def call_in_order(jobs: Sequence[Callable[[], Result]], processes: int = 1) -> list[Result]:
    """Each job's result, in the jobs' order; `processes` > 1 runs them in that many processes.

    A job must pickle when it runs in another process: a functools.partial of a module-level
    function does."""
    if processes < 1:
        raise ValueError(f"need at least one process, got {processes}")
    if processes == 1 or len(jobs) < 2:
        return [job() for job in jobs]
    # Small chunks keep every process busy when jobs differ in cost (late embryos hold more
    # cells); the order of the results, and so every file and row written, does not depend on
    # how many processes ran.
    chunk = max(1, len(jobs) // (processes * 8))
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs))) as pool:
        return list(pool.map(_call, jobs, chunksize=chunk))


def rows_in_order(jobs: Sequence[Callable[[], list[Row]]], processes: int = 1) -> list[Row]:
    """The rows every job returns, one list, in the jobs' order (see `call_in_order`)."""
    return [row for rows in call_in_order(jobs, processes) for row in rows]


def _call(job: Callable[[], Result]) -> Result:
    return job()
