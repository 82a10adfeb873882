"""(9) Jobs on RQ: frames per second of one stack with 1 and 2 `rq worker` processes of one
ONNX Runtime thread each, on a redis-server of its own (issue #21: 2 workers >= 1.7x one)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import tifffile

from bench.context import BenchContext
from bench.inputs import synthetic_embryo
from bench.report import Row
from bench.server import REPOSITORY_ROOT

SECTION = "9 jobs"
MIN_SCALING = 1.7
CHUNK_FRAMES = 4
MODEL = "nucleus"


def stack_tiff(frames: int) -> bytes:
    """A z-stack of synthetic 708x512 embryos (a new seed per slice), 8-bit."""
    planes = [np.asarray(synthetic_embryo(seed=index)) for index in range(frames)]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack(planes).astype(np.uint8), photometric="minisblack")
    return buffer.getvalue()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Queue:
    """A redis-server of its own and `rq worker` processes on it."""

    def __init__(self, models_dir: Path, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        port = _free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        self.environment = {
            **os.environ,
            "PYTHONPATH": str(REPOSITORY_ROOT),
            "REDIS_URL": self.url,
            "DEVOLEARN_MODELS_DIR": str(models_dir),
            "JOBS_DIR": str(folder / "jobs"),
            "JOB_CHUNK_FRAMES": str(CHUNK_FRAMES),
            "ORT_INTRA_OP_THREADS": "1",
            "LOG_LEVEL": "WARNING",
        }
        self.workers: list[subprocess.Popen] = []
        from devolearn_web.jobs.rq_engine import RQEngine, connect
        from devolearn_web.jobs.settings import JobSettings

        self.engine = RQEngine(
            JobSettings(jobs_dir=folder / "jobs", models_dir=models_dir, chunk_frames=CHUNK_FRAMES),
            connect(self.url),
        )
        for _ in range(100):
            try:
                self.engine.connection.ping()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.05)

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "devolearn_web.jobs.worker"],
                    env=self.environment,
                    cwd=REPOSITORY_ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.workers = []

    def run_job(self, data: bytes, timeout_s: float = 600) -> float:
        """Submit the stack as a job, wait for it; seconds from submission to finished."""
        from devolearn_web.jobs import work

        job_id = uuid.uuid4().hex
        store = self.engine.store
        record = {"id": job_id, "model": MODEL, "state": "queued", "done": 0, "total": None}
        record.update(error=None, created_at=time.time(), options={}, filename="bench.tif")
        store.create(job_id, record, 3600)
        store.put_blob_from_file(job_id, work.INPUT, io.BytesIO(data))
        started = time.perf_counter()
        self.engine.submit(job_id)
        while time.perf_counter() - started < timeout_s:
            state = store.get(job_id)["state"]
            if state == "finished":
                return time.perf_counter() - started
            if state in ("failed", "cancelled"):
                raise RuntimeError(f"the bench job {state}: {store.get(job_id).get('error')}")
            time.sleep(0.05)
        raise RuntimeError("the bench job did not finish in time")

    def close(self) -> None:
        self.stop_workers()
        self.redis.terminate()
        self.redis.wait(10)


def measure_jobs(context: BenchContext) -> list[Row]:
    """The same stack with 1 then 2 workers (each warmed by a small job first)."""
    frames = 16 if context.quick else 48
    data = stack_tiff(frames)
    warm = stack_tiff(CHUNK_FRAMES * 2)
    rates = {}
    with tempfile.TemporaryDirectory(prefix="devolearn-bench-jobs-") as folder:
        queue = Queue(context.models_dir, Path(folder))
        try:
            for workers in (1, 2):
                queue.start_workers(workers)
                queue.run_job(warm)  # each worker loads its models on its first chunk
                rates[workers] = frames / queue.run_job(data)
                queue.stop_workers()
        finally:
            queue.close()
    scaling = rates[2] / rates[1]
    return [
        Row(SECTION, f"{MODEL}, {frames} frames 708x512, 1 RQ worker", f"{rates[1]:.2f} frames/s"),
        Row(
            SECTION,
            f"{MODEL}, {frames} frames 708x512, 2 RQ workers",
            f"{rates[2]:.2f} frames/s",
            compared_with="1 worker",
            ratio=scaling,
            target=f">= {MIN_SCALING}x",
            met=scaling >= MIN_SCALING,
        ),
    ]
