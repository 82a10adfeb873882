"""`python -m bench.prepare_memory make|measure PATH`: a large synthetic recording,
and the peak resident memory of a worker preparing it as a job (the test and the docs use it).

`measure` runs prepare in this process on a folder store and prints one JSON line: the peak
RSS (VmHWM) before and after, the file's size, the chunks written.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def vm_hwm_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make(path: Path, time_points: int, depth: int = 35, height: int = 512, width: int = 708):
    """A TZYX 16-bit ImageJ hyperstack written a page at a time (never whole in memory)."""
    import tifffile

    rng = np.random.default_rng(0)
    plane = rng.integers(0, 4000, (height, width), dtype=np.uint16)

    def pages():
        for index in range(time_points * depth):
            yield np.roll(plane, index, axis=1)

    tifffile.imwrite(
        path,
        pages(),
        shape=(time_points, depth, height, width),
        dtype=np.uint16,
        imagej=True,
        metadata={"axes": "TZYX"},
    )


def measure(path: Path, chunk_frames: int = 35) -> dict:
    """Prepare `path` as a job on a FolderStore; peak RSS before and after, in MB."""
    from devolearn_web.jobs import work
    from devolearn_web.jobs.settings import JobSettings
    from devolearn_web.jobs.store import FolderStore

    with tempfile.TemporaryDirectory(prefix="devolearn-prepare-") as folder:
        settings = JobSettings(
            jobs_dir=Path(folder), models_dir=Path(folder), chunk_frames=chunk_frames
        )
        store = FolderStore(settings.jobs_dir)
        record = {"id": "measure", "model": "nucleus", "state": "queued", "options": {}}
        store.create("measure", record, 3600)
        with path.open("rb") as source:
            store.put_blob_from_file("measure", work.INPUT, source)
        before = vm_hwm_mb()
        started = time.perf_counter()
        chunks = work.prepare(store, "measure", settings)
        seconds = time.perf_counter() - started
        return {
            "file_mb": round(path.stat().st_size / 1e6),
            "peak_rss_before_mb": round(before),
            "peak_rss_after_mb": round(vm_hwm_mb()),
            "chunks": chunks,
            "frames": store.get("measure")["total"],
            "seconds": round(seconds, 1),
        }


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    if command == "make":
        make(target, int(sys.argv[3]) if len(sys.argv) > 3 else 40)
    else:
        print(json.dumps(measure(target)))
