"""Load on loopback against gunicorn as the Procfile starts it (tiny test models): the bad-input
corpus leaves the worker serving, and 2,000 requests from 16 clients get 2,000 answers, with
the 99th-percentile latency printed and the worker's memory flat after the first 1,000 answers
(at the end, at most 10% above the highest RSS sampled until then).
"""

from __future__ import annotations

import http.client
import json
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

    def __init__(self, port: int, worker: int) -> None:
        self.port = port
        self.worker = worker
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
            if self.issued >= TOTAL_REQUESTS:
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


def test_2000_requests_from_16_clients(gunicorn_server, tiny_models_dir, capsys):
    server = gunicorn_server(tiny_models_dir)
    [worker] = server.worker_pids()
    run = LoadRun(server.port, worker)
    started = time.perf_counter()
    clients = [threading.Thread(target=run.client) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=300)
    elapsed = time.perf_counter() - started
    memory_at_end = resident_kib(worker)

    latencies_ms = np.array(run.latencies) * 1000
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    growth = memory_at_end / run.memory_at_checkpoint - 1
    with capsys.disabled():
        print(
            f"\nload: {run.completed} requests from {CLIENTS} clients in {elapsed:.1f} s "
            f"({run.completed / elapsed:.0f}/s), {len(run.errors)} errors; latency p50 "
            f"{p50:.0f} ms, p99 {p99:.0f} ms, max {latencies_ms.max():.0f} ms; worker RSS "
            f"{run.memory_at_checkpoint / 1024:.1f} MiB (peak to request {MEMORY_CHECKPOINT}), "
            f"{memory_at_end / 1024:.1f} MiB at {TOTAL_REQUESTS} ({growth:+.1%})"
        )
    assert run.completed == TOTAL_REQUESTS
    assert run.errors == []
    assert growth < MAX_MEMORY_GROWTH
    assert server.worker_pids() == [worker], "the worker was replaced under load"
