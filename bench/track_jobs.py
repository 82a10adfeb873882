"""`python -m bench.track_jobs --times 20`: a simulated recording tracked as a job, timed.

The simulator renders `--times` z-stacks (35 x 256 x 354 by default, a held-out seed from the
4-cell stage) as the Cell Tracking Challenge ships them: a ZIP of tTTT.tif. The job's three
steps (prepare, every chunk, assemble with track=true) run in this process on a folder store,
with the shipped nucleus model, as one RQ worker runs them. One JSON line: seconds per time
point for segmentation (the chunks) and for 3D assembly + tracking (the assembly step), the
tracks found, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from bench.prepare_memory import vm_hwm_mb

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def recording_zip(folder: Path, times: int, shape: tuple[int, int, int], seed: int) -> Path:
    """The simulated recording as a ZIP of tTTT.tif (the job's input), and its folder."""
    from devolearn_web.training.simulator.ctc_recording import write_ctc_recording

    write_ctc_recording(folder / "recording", seed, 4, times, shape=shape)
    path = folder / "recording.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as bundle:
        for t in range(times):
            name = f"t{t:03d}.tif"
            bundle.write(folder / "recording" / "01" / name, name)
    return path


def measure(path: Path, chunk_frames: int, models_dir: Path) -> dict:
    """Prepare, chunks and assembly of a track=true job on `path`: seconds and peak RSS."""
    from devolearn_web.jobs import work
    from devolearn_web.jobs.settings import JobSettings
    from devolearn_web.jobs.store import FolderStore
    from devolearn_web.registry import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="devolearn-trackjob-") as folder:
        settings = JobSettings(
            jobs_dir=Path(folder), models_dir=models_dir, chunk_frames=chunk_frames
        )
        store = FolderStore(settings.jobs_dir)
        registry = ModelRegistry(models_dir)
        job_id = uuid.uuid4().hex
        options = {"assembly": {"assemble_3d": False, "track": True, "z_step_um": None}}
        record = {
            "id": job_id,
            "model": "nucleus",
            "state": "queued",
            "options": options,
            "created_at": time.time(),
            "filename": path.name,
        }
        store.create(job_id, record, 24 * 3600)
        with path.open("rb") as source:
            store.put_blob_from_file(job_id, work.INPUT, source)
        started = time.perf_counter()
        count = work.prepare(store, job_id, settings)
        prepared = time.perf_counter()
        for index in range(count):
            work.run_chunk(store, job_id, index, registry, settings)
            done = store.get(job_id)["done"]
            elapsed = time.perf_counter() - prepared
            print(f"{done} frames segmented in {elapsed:.0f} s", file=sys.stderr, flush=True)
        segmented = time.perf_counter()
        peak_before_assembly = vm_hwm_mb()
        work.assemble(store, job_id, settings)
        assembled = time.perf_counter()
        answer = json.loads(store.get_blob(job_id, work.RESULT))
        ctc_started = time.perf_counter()
        body, _, _ = work.download(store, job_id, "ctc", "segmentation")
        ctc_s = time.perf_counter() - ctc_started
    times = len(answer["nuclei_per_time"])
    return {
        "time_points": times,
        "shape": answer["axes"]["shape"],
        "frames": answer["frame_count"],
        "prepare_s": round(prepared - started, 1),
        "segment_s_per_time_point": round((segmented - prepared) / times, 2),
        "assemble_track_s_per_time_point": round((assembled - segmented) / times, 2),
        "total_s_per_time_point": round((assembled - started) / times, 2),
        "assembly_ms_reported": answer["timings_ms"].get("assembly"),
        "tracks": len(answer["tracks"]),
        "divisions": answer["divisions"],
        "nuclei_first_last": [answer["nuclei_per_time"][0], answer["nuclei_per_time"][-1]],
        "ctc_zip_mb": round(len(body) / 1e6, 1),
        "ctc_download_s": round(ctc_s, 1),
        "peak_rss_mb_before_assembly": round(peak_before_assembly),
        "peak_rss_mb": round(vm_hwm_mb()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--shape", default="35,256,354", help="z,y,x of each time point")
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--chunk-frames", type=int, default=4, help="JOB_CHUNK_FRAMES")
    parser.add_argument("--models", type=Path, default=REPOSITORY_ROOT / "models")
    args = parser.parse_args(argv)
    shape = tuple(int(size) for size in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="devolearn-recording-") as folder:
        rendered = time.perf_counter()
        path = recording_zip(Path(folder), args.times, shape, args.seed)
        render_s = time.perf_counter() - rendered
        measured = measure(path, args.chunk_frames, args.models)
    measured["render_s"] = round(render_s, 1)
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
