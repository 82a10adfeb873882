"""Every setting read from the environment in one place, with safe defaults; logs go to stdout."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPOSITORY_ROOT / "models"
# Room for the multipart envelope and small form fields around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(
            f"Environment variable {name} must be an integer, got {value!r}"
        ) from error


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError as error:
        raise ValueError(f"Environment variable {name} must be a number, got {value!r}") from error


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


class Config:
    """Settings, read from the environment when the app is created (not at import)."""

    def __init__(self) -> None:
        # Without SECRET_KEY a random key is made per process (create_app logs a warning): safe
        # because the app keeps no sessions, logins or signed cookies that must survive a restart.
        self.SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
        self.MODELS_DIR = Path(os.environ.get("DEVOLEARN_MODELS_DIR") or DEFAULT_MODELS_DIR)
        self.ORT_INTRA_OP_THREADS = _env_int("ORT_INTRA_OP_THREADS", 1)
        self.ORT_INTER_OP_THREADS = _env_int("ORT_INTER_OP_THREADS", 1)
        # ONNX Runtime's pool threads spin for a while after each run, waiting for more work;
        # on a 2-core dyno that takes the core the request's own object finding needs next.
        self.ORT_ALLOW_SPINNING = _env_flag("ORT_ALLOW_SPINNING", default=False)
        # A folder for this machine's optimised copies of the model files (about 40 MB less
        # memory per float32 FPN); gunicorn.conf.py sets one, empty loads the files themselves.
        self.ORT_OPTIMIZED_CACHE_DIR = os.environ.get("ORT_OPTIMIZED_CACHE_DIR", "").strip()
        # One Cell Tracking Challenge time point (35 x 512 x 708, 16-bit) is 25.4 MB; leave room.
        self.MAX_UPLOAD_BYTES = _env_int("MAX_UPLOAD_BYTES", 40_000_000)
        self.MAX_IMAGE_PIXELS = _env_int("MAX_IMAGE_PIXELS", 40_000_000)
        # Memory the requests in flight in one worker may hold at once, on top of the worker
        # with its three models loaded (~220 MB): sized for a 512 MB dyno, with room left for
        # the heap's slack. A request that does not fit waits MEMORY_WAIT_SECONDS, then gets a
        # 503 with Retry-After; 0 switches admission off (devolearn_web/admission.py).
        self.MEMORY_BUDGET_MB = _env_float("MEMORY_BUDGET_MB", 240.0)
        self.MEMORY_WAIT_SECONDS = _env_float("MEMORY_WAIT_SECONDS", 10.0)
        # A recent answer's network output (probability maps on the working grid, never the
        # upload), held in memory so the slider and downloads need no new run; counted in the
        # memory budget above and dropped this long after its last use (result_cache.py).
        self.RESULT_CACHE_MB = _env_float("RESULT_CACHE_MB", 48.0)
        self.RESULT_CACHE_SECONDS = _env_float("RESULT_CACHE_SECONDS", 600.0)
        self.PRELOAD_MODELS = _env_flag("PRELOAD_MODELS")
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
        # Stop a job after this many seconds with a clear 503, before Heroku's 30 s router limit
        # and gunicorn's worker timeout cut it without a word; 0 switches the budget off.
        self.JOB_TIME_BUDGET_SECONDS = _env_float("JOB_TIME_BUDGET_SECONDS", 20.0)
        # Per client IP, per worker process, in memory: a token bucket over the model runs.
        self.RATE_LIMIT_ENABLED = _env_flag("RATE_LIMIT_ENABLED", default=True)
        # Generous enough for one person dropping files and resting the threshold slider often.
        self.RATE_LIMIT_PER_MINUTE = _env_float("RATE_LIMIT_PER_MINUTE", 60.0)
        self.RATE_LIMIT_BURST = _env_int("RATE_LIMIT_BURST", 20)
        # How many proxies in front of the app append to X-Forwarded-For (Heroku's router: 1).
        # 0 ignores the header, which any client can forge. Heroku sets DYNO in every dyno, and
        # there every client arrives from the router, so without this all would share one bucket.
        self.TRUSTED_PROXY_COUNT = _env_int(
            "TRUSTED_PROXY_COUNT", 1 if os.environ.get("DYNO") else 0
        )
        # Long jobs (devolearn_web/jobs): on RQ workers when REDIS_URL is set (Heroku Redis),
        # else in a background pool of this process. Each setting is read by web and worker alike.
        self.REDIS_URL = os.environ.get("REDIS_URL", "").strip()
        # A whole recording (the Cell Tracking Challenge's is 4.9 GB) is sent as several jobs.
        self.JOB_MAX_UPLOAD_BYTES = _env_int("JOB_MAX_UPLOAD_BYTES", 2_000_000_000)
        # A job's input and results, outside the static tree; deleted when no longer needed.
        self.JOBS_DIR = os.environ.get("JOBS_DIR", "").strip() or os.path.join(
            tempfile.gettempdir(), f"devolearn-jobs-{os.getuid()}"
        )
        # Frames per chunk: what one worker holds and runs at once, and the unit of a retry.
        self.JOB_CHUNK_FRAMES = _env_int("JOB_CHUNK_FRAMES", 4)
        # One chunk must end within Heroku's 30 s between SIGTERM and SIGKILL, so a worker told to
        # stop finishes its chunk; a longer one is stopped and retried.
        self.JOB_CHUNK_TIMEOUT_SECONDS = _env_int("JOB_CHUNK_TIMEOUT_SECONDS", 25)
        # Decoding the whole upload into chunks (the step before them) may take longer.
        self.JOB_PREPARE_TIMEOUT_SECONDS = _env_int("JOB_PREPARE_TIMEOUT_SECONDS", 600)
        self.JOB_RETRIES = _env_int("JOB_RETRIES", 2)
        # How long a finished job's results are kept (then deleted), and a failed job's record.
        self.JOB_RESULT_TTL_SECONDS = _env_int("JOB_RESULT_TTL_SECONDS", 3600)
        # Nothing of a job outlives this, whatever happens to it (a crashed web or worker dyno).
        self.JOB_MAX_LIFETIME_SECONDS = _env_int("JOB_MAX_LIFETIME_SECONDS", 24 * 3600)
        # In-process jobs (no REDIS_URL): how many run at once beside the requests.
        self.JOB_THREADS = _env_int("JOB_THREADS", 1)
        # A job's stack may be far larger than a request's: it is decoded once, then chunked.
        self.JOB_MAX_STACK_VOXELS = _env_int("JOB_MAX_STACK_VOXELS", 2_000_000_000)
        self.JOB_MAX_FRAMES = _env_int("JOB_MAX_FRAMES", 100_000)
        # A model page sends a file over this many bytes as a job (0: predict's own limit,
        # MAX_UPLOAD_BYTES, over which predict answers 413); a stack predict refuses as too many
        # values or frames (413) is sent as a job too.
        self.PAGE_JOB_BYTES = _env_int("PAGE_JOB_BYTES", 0)

    def as_dict(self) -> dict:
        """The settings as Flask config keys."""
        return {key: value for key, value in vars(self).items() if key.isupper()}


def request_size_limit(max_upload_bytes: int) -> int:
    """Flask's MAX_CONTENT_LENGTH for a per-file limit: the file plus the multipart envelope."""
    return max_upload_bytes + MULTIPART_OVERHEAD_BYTES


def configure_logging(level: str) -> None:
    """One stdout handler on the package logger (platforms like Heroku read stdout)."""
    logger = logging.getLogger("devolearn_web")
    logger.setLevel(level)
    if not any(getattr(handler, "devolearn", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.devolearn = True
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
