"""Clean exit: a gunicorn worker told to stop (SIGTERM to the master, as at every Heroku deploy and
daily restart, or max_requests recycling) answers the requests in flight, then exits with status
0: no SIGABRT, SIGSEGV, core dump or C++ exception (`std::system_error`) from ONNX Runtime.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from reliability_support import REPOSITORY_ROOT, multipart_body, request

# What a worker that did not exit cleanly leaves in gunicorn's log (the arbiter logs every
# worker that exits with a signal or a non-zero status; C++ and the kernel add the rest).
UNCLEAN_EXIT = re.compile(
    r"SIGABRT|SIGSEGV|SIGKILL|core dump|std::|terminate called|was sent|exited with code"
)
ROUNDS = 3


def png(side: int = 64) -> bytes:
    image = np.zeros((side, side), np.uint8)
    image[side // 4 : side // 2, side // 4 : side // 2] = 220
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_exited_cleanly(log: str, workers: list[int]) -> None:
    """Every worker logged its own exit, and nothing says one died another way."""
    for worker in workers:
        assert f"Worker exiting (pid: {worker})" in log, log
    unclean = [line for line in log.splitlines() if UNCLEAN_EXIT.search(line)]
    assert not unclean, "\n".join(unclean)


FORK_PROBE = """
import os, runpy, sys, time
runpy.run_path("gunicorn.conf.py")  # what the master runs before preload_app imports the app
import onnxruntime  # noqa: F401
child = os.fork()
if child == 0:
    sys.exit(0)  # a worker's exit: interpreter shutdown, then C++ static destructors
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        print(status)
        sys.exit(0)
    time.sleep(0.05)
os.kill(child, 9)
print("hung")
"""


def test_a_process_forked_after_importing_onnxruntime_exits_cleanly():
    # The crash on SIGTERM in one small piece: ONNX Runtime imported in the master, a child
    # forked, the child exits. Without gunicorn.conf.py's guard the child hangs or aborts.
    result = subprocess.run(
        [sys.executable, "-c", FORK_PROBE],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "0", (result.stdout, result.stderr)


@pytest.mark.slow
def test_sigterm_with_a_request_in_flight_answers_it_and_exits_cleanly(
    gunicorn_server, slow_models_dir
):
    # diameter = the tiny cards' trained median: the grid is the upload itself, one slow run
    # (seconds, well inside gunicorn's graceful timeout).
    body, content_type = multipart_body({"diameter": "14"}, png())
    for _ in range(ROUNDS):
        server = gunicorn_server(slow_models_dir, JOB_TIME_BUDGET_SECONDS="60", LOG_LEVEL="info")
        workers = server.worker_pids()
        outcome: dict = {}

        def slow_request(port: int = server.port, outcome: dict = outcome) -> None:
            try:
                outcome["answer"] = request(
                    port, "POST", "/api/v1/predict/nucleus", body, content_type, timeout=60
                )
            except OSError as error:
                outcome["error"] = error

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(1.0)  # the slow model is running in the worker now
        assert client.is_alive(), outcome
        server.process.send_signal(signal.SIGTERM)
        client.join(timeout=60)
        assert server.process.wait(timeout=60) == 0
        assert "error" not in outcome, outcome
        status, answer, _ = outcome["answer"]
        assert status == 200, answer[:300]
        log = server.log()
        assert "Handling signal: term" in log
        assert_exited_cleanly(log, workers)


@pytest.mark.slow
def test_a_worker_recycled_by_max_requests_exits_cleanly(gunicorn_server, tiny_models_dir):
    server = gunicorn_server(tiny_models_dir, GUNICORN_MAX_REQUESTS="2", LOG_LEVEL="info")
    body, content_type = multipart_body({}, png())
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) <= ROUNDS and time.monotonic() < deadline:
        for pid in server.worker_pids():
            if pid not in workers:
                workers.append(pid)
        try:
            status, answer, _ = request(
                server.port, "POST", "/api/v1/predict/nucleus", body, content_type, timeout=30
            )
        except OSError:
            time.sleep(0.2)  # between a worker's exit and its successor's first accept
            continue
        assert status == 200, answer[:300]
    assert len(workers) > ROUNDS, f"only {len(workers)} workers in 60 s:\n{server.log()}"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    log = server.log()
    assert log.count("Autorestarting worker after current request") >= ROUNDS
    assert_exited_cleanly(log, workers)
