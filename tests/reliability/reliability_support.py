"""Helpers for the reliability tests: a slow ONNX model, gunicorn as the Procfile starts it, /proc.

Plain functions (fixtures live in conftest.py): the load and fault tests start a real gunicorn on
loopback, find its worker processes and read their memory from /proc/<pid>/status.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent.parent
SLOW_MODEL_SIDE = 1024
# Each step squares a 1024 x 1024 matrix (2 GFLOP, about 10 ms on this CPU) and squashes it
# through a sigmoid (so values stay finite): a run of this many steps lasts seconds, and ONNX
# Runtime can stop it between any two nodes. (150 steps ran in under a second once gunicorn.conf.py
# gave each worker both cores, so the margin is wide.)
SLOW_MODEL_STEPS = 600


def build_slow_segmentation_model(path: Path) -> str:
    """Write an ONNX model with the segmentation contract that takes seconds; its sha256.

    A chain of SLOW_MODEL_STEPS 1024x1024 matrix products that depends on the input (so ONNX
    Runtime cannot fold it away at load), added times 0 to the input: any working grid."""
    from onnx import TensorProto, checker, helper, numpy_helper

    side = SLOW_MODEL_SIDE
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["start", "nothing"], ["big0"]),
    ]
    for index in range(SLOW_MODEL_STEPS):
        nodes.append(helper.make_node("MatMul", [f"big{index}", f"big{index}"], [f"sq{index}"]))
        nodes.append(helper.make_node("Sigmoid", [f"sq{index}"], [f"big{index + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"big{SLOW_MODEL_STEPS}"], ["last"], keepdims=0),
        helper.make_node("Mul", ["last", "zero"], ["still_nothing"]),
        helper.make_node("Add", ["input", "still_nothing"], ["output"]),
    ]
    shape = ["N", 1, "H", "W"]
    graph = helper.make_graph(
        nodes,
        "slow_segmentation",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[
            numpy_helper.from_array(np.full((side, side), 0.001, dtype=np.float32), "start"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def install_slow_model(models_dir: Path, name: str = "nucleus") -> None:
    """Replace one segmentation model in models_dir by the slow one (its card updated)."""
    card_path = models_dir / f"{name}.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["sha256"] = build_slow_segmentation_model(models_dir / card["file"])
    card["output"]["activation"] = "none"  # it ends in a sigmoid
    card_path.write_text(json.dumps(card), encoding="utf-8")


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command(port: int) -> list[str]:
    """The Procfile's web command, bound to loopback instead of every interface."""
    lines = (REPOSITORY_ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    (line,) = [line for line in lines if line.startswith("web:")]
    command = line.split(":", 1)[1].replace("$PORT", str(port)).replace("0.0.0.0", "127.0.0.1")
    words = shlex.split(command)
    assert words[0] == "gunicorn", line
    # The venv's own gunicorn, whatever PATH says.
    return [sys.executable, "-m", "gunicorn", *words[1:]]


@dataclass
class GunicornServer:
    """A gunicorn master started from the Procfile's command; stop() ends it and its workers."""

    process: subprocess.Popen
    port: int
    log_path: Path
    connections: list = field(default_factory=list)

    @property
    def master_pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The master's child processes (its workers), from /proc."""
        return child_pids(self.master_pid)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is gunicorn's quick shutdown; SIGTERM would wait for keep-alive clients.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_gunicorn(models_dir: Path, log_path: Path, **environment: str) -> GunicornServer:
    """Start gunicorn as the Procfile does, on loopback, and wait until every model is loaded."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DEVOLEARN_MODELS_DIR": str(models_dir),
        "PRELOAD_MODELS": "1",
        "SECRET_KEY": "reliability-tests",
        "RATE_LIMIT_ENABLED": "0",
        "LOG_LEVEL": "warning",
        **environment,
    }
    env.pop("DEVOLEARN_PRELOAD_IN_WORKERS", None)
    log = log_path.open("wb")
    process = subprocess.Popen(
        procfile_command(port), cwd=REPOSITORY_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    server = GunicornServer(process, port, log_path)
    try:
        wait_until_ready(server, timeout=60)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_ready(server: GunicornServer, timeout: float) -> dict:
    """Poll /healthz until the models are loaded in a worker; the health answer."""
    deadline = time.monotonic() + timeout
    while True:
        assert server.process.poll() is None, f"gunicorn exited:\n{server.log()}"
        try:
            status, body, _ = request(server.port, "GET", "/healthz", timeout=5)
            health = json.loads(body)
            if status == 200 and all(state["loaded"] for state in health["models"].values()):
                return health
        except (OSError, http.client.HTTPException, ValueError):
            pass
        assert time.monotonic() < deadline, f"gunicorn not ready in {timeout} s:\n{server.log()}"
        time.sleep(0.2)


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent`, from /proc/<pid>/stat."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; fields after its ')' are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def resident_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def multipart_body(
    fields: dict[str, str], file_bytes: bytes | None, filename: bytes = b"image.png"
) -> tuple[bytes, str]:
    """(body, content type) of a multipart form; filename is raw bytes (may be non-UTF-8)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if file_bytes is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
            + filename
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + file_bytes
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 30,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP request on loopback: (status, body, headers); reuses `connection` if given."""
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        if own:
            connection.close()


def build_nan_model(path: Path) -> str:
    """Write a segmentation-contract model whose every output is NaN (0 * log(-1)); sha256."""
    from onnx import TensorProto, checker, helper, numpy_helper

    shape = ["N", 1, "H", "W"]
    nodes = [
        helper.make_node("Sqrt", ["minus_one"], ["nan"]),
        helper.make_node("Mul", ["input", "nan"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nan_segmentation",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array([-1.0], dtype=np.float32), "minus_one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
