"""Job fixtures: a real redis-server on a free port, real `rq worker` processes, both engines."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CHUNK_FRAMES = 4
# A chunk of the tiny models takes well under a second: a short timeout keeps the SIGKILL test
# fast, since a dead worker's chunk is retried this long (plus a margin) after it started.
CHUNK_TIMEOUT_S = 5
POLL_S = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A redis-server of its own on a free port, for this test session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    from redis import Redis

    client = Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_client(redis_url):
    """A client of the test redis-server, emptied before each test."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    client.flushdb()
    return client


def worker_environment(redis_url: str, models_dir: Path, jobs_dir: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY_ROOT),
        "REDIS_URL": redis_url,
        "DEVOLEARN_MODELS_DIR": str(models_dir),
        "JOBS_DIR": str(jobs_dir),
        "JOB_CHUNK_FRAMES": str(CHUNK_FRAMES),
        "JOB_CHUNK_TIMEOUT_SECONDS": str(CHUNK_TIMEOUT_S),
        "JOB_RETRIES": "2",
        "JOB_WORKER_MAINTENANCE_SECONDS": "2",
        "ORT_OPTIMIZED_CACHE_DIR": "",
        "ORT_DISABLE_TELEMETRY": "1",
    }


class Workers:
    """Real `rq worker` processes, started and killed by the test."""

    def __init__(self, environment: dict, log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []

    def start(self, extra_env: dict | None = None) -> subprocess.Popen:
        log = (self.log_dir / f"worker-{len(self.processes)}.log").open("wb")
        self.logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "devolearn_web.jobs.worker"],
            env={**self.environment, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY_ROOT,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        for log in self.logs:
            log.close()

    def log_text(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def rq_workers(redis_url, redis_client, tiny_models_dir, tmp_path):
    """Start real workers with workers.start(); every one still running is killed at the end."""
    workers = Workers(worker_environment(redis_url, tiny_models_dir, tmp_path / "jobs"), tmp_path)
    yield workers
    workers.stop_all()


@pytest.fixture
def rq_app(make_app, redis_url, redis_client, tmp_path):
    """The app with REDIS_URL set (jobs go to RQ), tiny chunks."""
    return make_app(
        REDIS_URL=redis_url,
        JOBS_DIR=str(tmp_path / "jobs"),
        JOB_CHUNK_FRAMES=CHUNK_FRAMES,
        JOB_CHUNK_TIMEOUT_SECONDS=CHUNK_TIMEOUT_S,
    )


@pytest.fixture
def local_app(make_app, tmp_path):
    """The app without REDIS_URL (jobs in-process), tiny chunks."""
    app = make_app(REDIS_URL="", JOBS_DIR=str(tmp_path / "jobs"), JOB_CHUNK_FRAMES=CHUNK_FRAMES)
    yield app
    app.extensions["devolearn_jobs"].shutdown()


def disk_stack_tiff(image_maker, frames: int) -> bytes:
    """A (frames, 140, 200) 8-bit z-stack: frame i holds 1 + i % 5 bright disks."""
    centres = image_maker.five_disks
    planes = [image_maker.disks((140, 200), centres[: 1 + i % 5], 12) for i in range(frames)]
    return image_maker.tiff(image_maker.uint8(np.stack(planes)), photometric="minisblack")


def wait_for_state(client, status_url: str, states=("finished", "failed", "cancelled"), timeout=60):
    """Poll the status URL until the job's state is one of `states`; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(status_url).get_json()
        if answer["state"] in states or time.monotonic() > deadline:
            return answer
        time.sleep(POLL_S)
