"""Deploy files: serving requirements without torch, the Python version, gunicorn as deployed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVING_PACKAGES = {
    "flask",
    "rq",
    "redis",
    "gunicorn",
    "onnxruntime",
    "numpy",
    "pillow",
    "plotly",
    "scipy",
    "scikit-image",
    "edt",
    "tifffile",
    "av",
    "laptrack",
    "roifile",  # Fiji ROI sets (format=roi)
    "pyyaml",  # the BioImage.IO packages' rdf.yaml
}


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


def test_serving_requirements_are_pinned_and_light():
    pins = requirement_pins(ROOT / "requirements.txt")
    assert set(pins) == SERVING_PACKAGES
    assert all(pins.values()), "every serving requirement is pinned with =="
    assert not {"torch", "torchvision", "onnx"} & set(pins)


def test_pins_match_the_installed_versions():
    for name, version in requirement_pins(ROOT / "requirements.txt").items():
        assert importlib.metadata.version(name) == version, name


def test_runtime_and_procfile():
    assert (ROOT / "runtime.txt").read_text().strip() == "python-3.11.7"
    procfile = (ROOT / "Procfile").read_text().strip()
    assert procfile.startswith("web: gunicorn wsgi:app")
    assert "$PORT" in procfile and "gunicorn.conf.py" in procfile
    # `heroku ps:scale worker=N` runs the RQ workers of the jobs (devolearn_web/jobs/worker.py).
    assert "\nworker: python -m devolearn_web.jobs.worker" in procfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_gunicorn_preloads_models_in_each_worker_after_fork(tiny_models_dir):
    port = free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DEVOLEARN_MODELS_DIR": str(tiny_models_dir),
        "PRELOAD_MODELS": "1",
        "WEB_CONCURRENCY": "2",
    }
    environment.pop("DEVOLEARN_PRELOAD_IN_WORKERS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = get_json(f"http://127.0.0.1:{port}/healthz")
                if all(state["loaded"] for state in health["models"].values()):
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not load the models in 30 s"
            time.sleep(0.2)
        assert health["status"] == "ok"
        # Every worker answers with its models already loaded (several requests reach both).
        for _ in range(6):
            states = get_json(f"http://127.0.0.1:{port}/healthz")["models"].values()
            assert all(state["loaded"] for state in states)
    finally:
        server.terminate()
        try:
            output = server.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0].decode()
    # Sessions are created in the workers after fork, never in the master before it.
    assert output.index("Booting worker") < output.index("Loaded model")
    assert 1 <= output.count("Loaded model nucleus") <= 2


ARENA_PROBE = """
import ctypes, ctypes.util, runpy, sys, tempfile, threading
if sys.argv[1] == "capped":
    runpy.run_path("gunicorn.conf.py")
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p

def allocate():
    kept = [bytearray(4096 + i) for i in range(2000)]
    del kept

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(handle))
    libc.fclose(ctypes.c_void_p(handle))
    print(open(report.name).read().count("<heap nr="))
"""


def malloc_heaps(mode: str) -> int:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    result = subprocess.run(
        [sys.executable, "-c", ARENA_PROBE, mode],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(sys.platform != "linux", reason="malloc arenas are glibc's")
def test_gunicorn_config_caps_malloc_arenas_for_threaded_workers():
    # Eight threads allocating at once get arenas of their own, unless the config capped them.
    assert malloc_heaps("plain") > 2
    assert malloc_heaps("capped") <= 2
