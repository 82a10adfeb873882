"""Load on loopback against gunicorn as the Procfile starts it (tiny test models): the bad-input
corpus leaves the worker serving, and 2,000 requests from 16 clients get 2,000 answers, with
the 99th-percentile latency printed (and held under a wide bound) and the worker's memory flat
after the first 1,000 answers (at the end, at most 10% above the highest RSS sampled until
then). With two workers, each must have loaded every model before the load starts.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

import numpy as np
import pytest
from bad_inputs import CORPUS, CORPUS_MAX_UPLOAD_BYTES, PNG
from reliability_support import multipart_body, request, resident_kib

TOTAL_REQUESTS = 2_000
CLIENTS = 16
MEMORY_CHECKPOINT = 1_000
MEMORY_SAMPLE_EVERY = 50
MAX_MEMORY_GROWTH = 0.10
MODELS = ("membrane", "nucleus", "lineage")
# Tiny models answer in tens of milliseconds; 16 clients queue behind each other. A p99 past
# this means requests stalled (a lock, a timeout, a worker restarting), not a slow machine.
MAX_P99_SECONDS = 5.0
TWO_WORKER_REQUESTS = 600
WORKERS_READY_SECONDS = 60

pytestmark = pytest.mark.slow


def test_the_worker_survives_the_whole_corpus(gunicorn_server, tiny_models_dir):
    server = gunicorn_server(tiny_models_dir, MAX_UPLOAD_BYTES=str(CORPUS_MAX_UPLOAD_BYTES))
    workers = server.worker_pids()
    for case in CORPUS:
        method, path, body, content_type = case.http()
        status, answer, _ = request(server.port, method, path, body, content_type)
        allowed = case.status if isinstance(case.status, tuple) else (case.status,)
        assert status in allowed, (case.id, status, answer[:300])
    assert server.worker_pids() == workers, "a worker died or was replaced during the corpus"
    status, answer, _ = request(
        server.port, "POST", "/api/v1/predict/nucleus", *multipart_body({}, PNG)
    )
    assert status == 200 and json.loads(answer)["count"] == 5


class LoadRun:
    """Shared state of the client threads: the next request number, latencies, errors, memory."""

    def __init__(self, port: int, worker: int, total: int = TOTAL_REQUESTS) -> None:
        self.port = port
        self.worker = worker
        self.total = total
        self.lock = threading.Lock()
        self.issued = 0
        self.completed = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        # RSS every MEMORY_SAMPLE_EVERY answers: it swings by several percent as NumPy's
        # temporaries come and go, so the warm-up's highest sample is the baseline, not one.
        self.memory_samples: list[tuple[int, int]] = []
        self.bodies = {name: multipart_body({}, PNG) for name in MODELS}

    def next_request(self) -> int | None:
        with self.lock:
            if self.issued >= self.total:
                return None
            self.issued += 1
            return self.issued

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if error:
                self.errors.append(error)
            self.completed += 1
            if self.completed % MEMORY_SAMPLE_EVERY == 0:
                self.memory_samples.append((self.completed, resident_kib(self.worker)))

    @property
    def memory_at_checkpoint(self) -> int:
        """The highest RSS sampled up to MEMORY_CHECKPOINT answers (KiB)."""
        return max(kib for done, kib in self.memory_samples if done <= MEMORY_CHECKPOINT)

    def client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while (number := self.next_request()) is not None:
            name = MODELS[number % len(MODELS)]
            body, content_type = self.bodies[name]
            started = time.perf_counter()
            error = None
            try:
                status, answer, _ = request(
                    self.port,
                    "POST",
                    f"/api/v1/predict/{name}",
                    body,
                    content_type,
                    connection=connection,
                )
                if status != 200:
                    error = f"{status}: {answer[:200]!r}"
            except (OSError, http.client.HTTPException) as failure:
                error = repr(failure)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.record(time.perf_counter() - started, error)
        connection.close()


def run_load(run: LoadRun) -> float:
    """Send run.total requests from CLIENTS threads; the seconds it took."""
    started = time.perf_counter()
    clients = [threading.Thread(target=run.client) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=300)
    return time.perf_counter() - started


def latency_line(run: LoadRun, elapsed: float) -> tuple[str, float]:
    """The printed summary of a run, and its 99th-percentile latency in seconds."""
    latencies_ms = np.array(run.latencies) * 1000
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    line = (
        f"{run.completed} requests from {CLIENTS} clients in {elapsed:.1f} s "
        f"({run.completed / elapsed:.0f}/s), {len(run.errors)} errors; latency p50 "
        f"{p50:.0f} ms, p99 {p99:.0f} ms, max {latencies_ms.max():.0f} ms"
    )
    return line, p99 / 1000


def test_2000_requests_from_16_clients(gunicorn_server, tiny_models_dir, capsys):
    server = gunicorn_server(tiny_models_dir)
    [worker] = server.worker_pids()
    run = LoadRun(server.port, worker)
    elapsed = run_load(run)
    memory_at_end = resident_kib(worker)

    line, p99 = latency_line(run, elapsed)
    growth = memory_at_end / run.memory_at_checkpoint - 1
    with capsys.disabled():
        print(
            f"\nload: {line}; worker RSS "
            f"{run.memory_at_checkpoint / 1024:.1f} MiB (peak to request {MEMORY_CHECKPOINT}), "
            f"{memory_at_end / 1024:.1f} MiB at {TOTAL_REQUESTS} ({growth:+.1%})"
        )
    assert run.completed == TOTAL_REQUESTS
    assert run.errors == []
    assert p99 < MAX_P99_SECONDS
    assert growth < MAX_MEMORY_GROWTH
    assert server.worker_pids() == [worker], "the worker was replaced under load"


def models_loaded_per_worker(log: str) -> dict[int, set[str]]:
    """Worker pid -> the models it loaded, from gunicorn.conf.py's post_worker_init line."""
    return {
        int(match[1]): set(match[2].split(", "))
        for match in re.finditer(r"Worker (\d+) loaded its models: ([\w, ]+)", log)
    }


def test_two_workers_each_load_every_model_then_serve(gunicorn_server, tiny_models_dir, capsys):
    # /healthz answers from whichever worker accepts the poll, so "ready" there can mean one
    # worker only: each worker's own log line is the proof.
    server = gunicorn_server(tiny_models_dir, WEB_CONCURRENCY="2", LOG_LEVEL="info")
    deadline = time.monotonic() + WORKERS_READY_SECONDS
    while True:
        workers = sorted(server.worker_pids())
        loaded = models_loaded_per_worker(server.log())
        if len(workers) == 2 and all(loaded.get(pid) == set(MODELS) for pid in workers):
            break
        assert time.monotonic() < deadline, f"workers {workers}, loaded {loaded}:\n{server.log()}"
        time.sleep(0.2)

    run = LoadRun(server.port, workers[0], total=TWO_WORKER_REQUESTS)
    elapsed = run_load(run)
    line, p99 = latency_line(run, elapsed)
    with capsys.disabled():
        print(f"\nload, two workers: {line}")
    assert run.completed == TWO_WORKER_REQUESTS
    assert run.errors == []
    assert p99 < MAX_P99_SECONDS
    assert sorted(server.worker_pids()) == workers, "a worker was replaced under load"
