"""Run independent jobs in worker processes, results in the order of the jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def ordered_map(
    function: Callable[[Job], Result], jobs: Iterable[Job], processes: int = 1
) -> list[Result]:
    """`[function(job) for job in jobs]`, spread over `processes` processes when more than one."""
    jobs = list(jobs)
    if processes < 1:
        raise ValueError(f"need at least one process, got {processes}")
    if processes == 1 or len(jobs) < 2:
        return [function(job) for job in jobs]
    # Small chunks keep every process busy when jobs differ in cost (late embryos hold more
    # cells); the order of the results, and so every file and row written, does not depend on
    # how many processes ran.
    chunk = max(1, len(jobs) // (processes * 8))
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs))) as pool:
        return list(pool.map(function, jobs, chunksize=chunk))
