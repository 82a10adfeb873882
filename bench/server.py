"""The app under gunicorn exactly as the Procfile starts it, on a loopback port, and a client.

The command is the Procfile's (`gunicorn wsgi:app --config gunicorn.conf.py`) with --bind set to
a free loopback port; settings come from the environment as on a dyno. The rate limit is off
(this is a load test from one address) and the upload limit is raised so a 16-bit 35-slice
stack (25.4 MB, the size of one Cell Tracking Challenge time point) is accepted.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 300
BENCH_ENVIRONMENT = {
    "HOST": "127.0.0.1",
    "LOG_LEVEL": "warning",
    "RATE_LIMIT_ENABLED": "0",
    "MAX_UPLOAD_BYTES": "64000000",
    "JOB_TIME_BUDGET_SECONDS": "120",
    "SECRET_KEY": "benchmark",
}


def free_loopback_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running gunicorn master; `started` is time.perf_counter() just before it was spawned."""

    process: subprocess.Popen
    port: int
    started: float
    settings: dict = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def client(self) -> Client:
        """A new keep-alive client; stop_server closes it if its user did not."""
        client = Client(self.port)
        self.clients.append(client)
        return client


def start_server(models_dir: Path, workers: int = 1, **settings: str) -> Server:
    """Spawn gunicorn (Procfile command) with WEB_CONCURRENCY=workers and extra env settings."""
    port = free_loopback_port()
    environment = {
        **os.environ,
        **BENCH_ENVIRONMENT,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "DEVOLEARN_MODELS_DIR": str(models_dir),
        **settings,
    }
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--config", "gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=REPOSITORY_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Server(process, port, started, {"workers": workers, **settings})


def stop_server(server: Server) -> None:
    """SIGTERM the master (it stops its workers); SIGKILL if it does not exit in time."""
    for client in server.clients:
        client.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def wait_until_workers_ready(server: Server) -> None:
    """Block until /healthz answers and every worker has forked."""
    deadline = time.monotonic() + START_TIMEOUT_S
    client = server.client()
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {server.process.returncode}")
            try:
                status, _ = client.get("/healthz")
                if status == 200 and len(server.worker_pids()) >= server.settings["workers"]:
                    return
            except OSError:
                client.close()
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError("gunicorn did not come up in time")


@contextmanager
def running_server(models_dir: Path, workers: int = 1, **settings: str) -> Iterator[Server]:
    """A started, healthy server, stopped on exit."""
    server = start_server(models_dir, workers, **settings)
    try:
        wait_until_workers_ready(server)
        yield server
    finally:
        stop_server(server)


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS (resident now) of a process, in KiB, from /proc."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            figures[key] = int(value.split()[0])
    return figures


class Client:
    """A keep-alive HTTP/1.1 client on one loopback port (one per thread)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._connection: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple:
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
                )
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # gunicorn closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        return self._request("GET", path, None, {})

    def post_file(self, path: str, data: bytes, filename: str, **fields: str) -> tuple[int, bytes]:
        """POST multipart/form-data with the file in field `file` plus text fields."""
        body, content_type = multipart_body(data, filename, fields)
        return self._request("POST", path, body, {"Content-Type": content_type})

    def predict(self, model: str, data: bytes, filename: str, **fields: str) -> dict:
        """The API's answer for one upload (NDJSON answers: the final result line)."""
        status, body = self.post_file(f"/api/v1/predict/{model}", data, filename, **fields)
        if status != 200:
            raise RuntimeError(f"{model}: HTTP {status}: {body[:300]!r}")
        if fields.get("progress") == "ndjson":
            last = json.loads(body.decode().strip().splitlines()[-1])
            if "result" not in last:
                raise RuntimeError(f"{model}: the stream ended with {last}")
            return last["result"]
        return json.loads(body)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def multipart_body(data: bytes, filename: str, fields: dict[str, str]) -> tuple[bytes, str]:
    """(body, content type) of a multipart form holding one file and some text fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        header = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{header}\r\n\r\n{value}\r\n".encode())
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
