"""Gunicorn settings (used by the Procfile and `make serve`); every value from the environment.

Fork safety: `preload_app` imports the app (Flask, NumPy, SciPy, ONNX Runtime) once in the
master so workers start fast and share those pages, but ONNX Runtime sessions own thread pools
that do not survive fork(). So sessions are never created in the master: `post_worker_init`
loads them in each worker after the fork when PRELOAD_MODELS is set, and otherwise each worker
loads a model on its first request. The `gthread` workers let one process (one copy of the
three models, ~350 MB) answer several requests at once; ONNX Runtime's run() is thread-safe.

Clean exit: importing ONNX Runtime must not start a thread in the master either (see
ORT_DISABLE_TELEMETRY below), and `worker_exit` releases the sessions while the interpreter is
whole, so a worker told to stop (SIGTERM, max_requests) finishes its requests and exits 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
# One worker with threads fits a 512 MB dyno; raise WEB_CONCURRENCY where memory allows.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# The cores are shared out between the workers: one model run may use every core of its share
# (a lone request on a 2-core dyno runs its network on both), and two workers do not fight
# over the same cores. Measured with `python -m bench --only latency,throughput`
# (docs/performance.md); an explicit ORT_INTRA_OP_THREADS still wins.
# sched_getaffinity: the cores this process may run on (a container's cpuset), not the host's.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
os.environ.setdefault("ORT_INTRA_OP_THREADS", str(max(1, _cores // workers)))
# Each machine makes its own ONNX Runtime-optimised copies of the models once (a subprocess on
# the first load) and every worker loads those: about 40 MB less per float32 FPN
# (devolearn_web/optimized_models.py). The dyno's /tmp is its own and starts empty.
os.environ.setdefault(
    "ORT_OPTIMIZED_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"devolearn-ort-cache-{os.getuid()}"),
)
preload_app = True
# ONNX Runtime's Linux wheel starts a telemetry uploader thread when it is imported (1.32: its
# 1DS "OneDsTelemetry" task dispatcher), and preload_app imports it here, in the master. fork()
# copies that thread's C++ object into each worker but not the thread; at the worker's exit a
# static destructor stops it: pthread_cond_destroy waits forever on the condition variable the
# missing thread was waiting on, or joining it throws std::system_error (EINVAL, ESRCH), and
# the worker dies with SIGABRT or SIGSEGV, or hangs until the master kills it. Set before the
# app (and ONNX Runtime) is imported, this keeps the thread from ever starting. Not a default a
# deploy may turn back on: the crash would return with it (tests/reliability/test_shutdown.py).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
# A 40-megapixel upload through the nucleus watershed takes a while on 2 cores.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# SIGTERM (every deploy and Heroku's daily restart): a worker stops accepting, finishes the
# requests in flight within this many seconds, and exits. Heroku kills the dyno 30 s after
# SIGTERM, so the whole drain must end before that.
graceful_timeout = 20
# Recycle a worker after this many requests (0: never), each worker at a different count
# (jitter) so they never all restart at once; the recycled worker drains and exits as on SIGTERM.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max(0, max_requests // 10)
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


# This file runs in the master before it imports the app, so this is the place to keep
# create_app() from building sessions there: the request moves to the workers (after fork).
os.environ.setdefault("DEVOLEARN_PRELOAD_IN_WORKERS", os.environ.get("PRELOAD_MODELS", ""))
os.environ["PRELOAD_MODELS"] = "0"


M_ARENA_MAX = -8  # glibc's mallopt() parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024


def cap_malloc_arenas(arenas: int) -> bool:
    """Let glibc's malloc keep at most `arenas` arenas in this process and the workers it forks.

    glibc gives each thread that allocates at once its own arena, and freed memory stays in it:
    gthread request threads, the postprocess helper and ONNX Runtime's pool left one worker
    at 288-308 MB after the three models; with 2 arenas 255-285 MB (`python -m bench --only
    memory`, three runs each). MALLOC_ARENA_MAX in the environment, which glibc reads itself,
    wins. False where the C library is not glibc (nothing to cap)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


cap_malloc_arenas(2)


def return_large_blocks_to_the_system(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every malloc of `threshold` bytes or more from its own mapping, given back to the
    system when it is freed, in this process and the workers it forks.

    glibc raises this threshold (up to 32 MB) each time a large block is freed, and blocks under
    it then come from the heap and stay there: PIL's 16 MB image blocks, ONNX Runtime's
    activations and NumPy's bands. A worker's resident memory then climbed by 50-190 MB
    with each large upload and never came back (a 36-megapixel membrane request after two
    nucleus ones peaked at 605 MB); fixed at 4 MB, it returns to ~250 MB after each and the
    same requests peak at 430-473 MB (tests/reliability/test_memory_budget.py). Small
    requests pay a little: blocks of 4 MB or more are fresh pages each time.
    MALLOC_MMAP_THRESHOLD_ in the environment, which glibc reads itself, wins."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


return_large_blocks_to_the_system()


def post_worker_init(worker) -> None:
    """In each worker, after fork: load every model now when PRELOAD_MODELS was set."""
    if not _flag(os.environ.get("DEVOLEARN_PRELOAD_IN_WORKERS", "")):
        return
    application = worker.wsgi
    registry = application.extensions["devolearn_registry"]
    with application.app_context():
        registry.preload()
    # Which worker holds which models: with several workers, /healthz answers from one of them.
    loaded = [name for name, state in registry.status().items() if state["loaded"]]
    worker.log.info("Worker %s loaded its models: %s", worker.pid, ", ".join(loaded) or "none")


def worker_exit(server, worker) -> None:
    """In the worker, after its requests are answered: release the ONNX Runtime sessions now.

    Their thread pools are joined here, in order, while the interpreter is whole, instead of by
    whatever garbage collection interpreter shutdown happens to do (or never does)."""
    application = getattr(worker, "wsgi", None)
    registry = getattr(application, "extensions", {}).get("devolearn_registry")
    if registry is not None:
        registry.close()
