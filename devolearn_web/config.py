"""Every setting read from the environment in one place, with safe defaults; logs go to stdout."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Limit:
    """One size or time limit: its setting's name, default, type, unit and reason."""

    name: str
    default: int | float
    type: type
    unit: str
    description: str

    def read(self) -> int | float:
        """The value from the environment variable of the same name, else the default."""
        if self.type is float:
            return _env_float(self.name, self.default)
        return _env_int(self.name, self.default)


MB = 1_000_000

# Every size and time limit, each settable from the environment variable of its name and listed
# in README.md (tests/test_config.py fails when the two differ; the table there is
# `python -m devolearn_web.config`). The app reads them from its config; engine modules take them
# as parameters, with these defaults.
LIMITS: tuple[Limit, ...] = (
    Limit(
        "MAX_UPLOAD_BYTES",
        40 * MB,
        int,
        "bytes",
        "one file sent to predict; one Cell Tracking Challenge time point (35 x 512 x 708, "
        "16-bit) is 25.4 MB",
    ),
    Limit(
        "MAX_IMAGE_PIXELS",
        40 * MB,
        int,
        "pixels",
        "one image or frame, read from its header (decompression bombs are refused before "
        "decoding)",
    ),
    Limit("MAX_STACK_VOXELS", 160 * MB, int, "values", "one stack or movie sent to predict"),
    Limit("MAX_STACK_FRAMES", 1000, int, "frames", "one stack or movie sent to predict"),
    Limit(
        "MAX_WORKING_PIXELS",
        6 * MB,
        int,
        "pixels",
        "the network's working image for one frame; a frame whose objects need a larger grid "
        "is analysed at a coarser scale, and the answer's scale note says so",
    ),
    Limit(
        "MAX_DOWNLOAD_VOXELS",
        60 * MB,
        int,
        "values",
        "one stack's download (masks, probability maps) made from a held result",
    ),
    Limit(
        "STACK_BATCH_SIZE",
        16,
        int,
        "frames",
        "a stack's frames go to ONNX Runtime this many at a time; a streamed answer reports "
        "progress after each batch",
    ),
    Limit(
        "MAX_FRAMES_WITH_IMAGES",
        64,
        int,
        "frames",
        "a stack's answer carries probability maps and figures up to this many frames; past "
        "it, numbers only (downloads have them all)",
    ),
    Limit(
        "MEMORY_BUDGET_MB",
        240.0,
        float,
        "MB",
        "memory the model runs in flight in one worker may hold at once, on top of the worker "
        "with its three models (~220 MB); a run that does not fit waits MEMORY_WAIT_SECONDS, "
        "then gets a 503 with Retry-After; 0 switches the budget off",
    ),
    Limit(
        "RESULT_CACHE_MB",
        48.0,
        float,
        "MB",
        "recent answers' network outputs held for the slider and downloads (counted in the "
        "memory budget); 0 holds none",
    ),
    Limit(
        "JOB_TIME_BUDGET_SECONDS",
        20.0,
        float,
        "seconds",
        "a request's model run stops with a clear 503 past this, before Heroku's 30 s router "
        "limit; 0 switches it off",
    ),
    Limit(
        "PAGE_JOB_BYTES",
        0,
        int,
        "bytes",
        "a model page sends a larger file as a job (0: MAX_UPLOAD_BYTES); a stack predict "
        "refuses as too large is sent as a job too",
    ),
    Limit("JOB_MAX_UPLOAD_BYTES", 2000 * MB, int, "bytes", "one job's upload"),
    Limit("JOB_MAX_STACK_VOXELS", 2000 * MB, int, "values", "one job's stack"),
    Limit("JOB_MAX_FRAMES", 100_000, int, "frames", "one job's stack"),
    Limit(
        "JOB_MAX_ASSEMBLY_VOXELS",
        150 * MB,
        int,
        "values",
        "one job's stack with assemble=3d or track=true: its assembly step holds every slice's "
        "labels and probability map at once (about 12 bytes a value), so this sizes the worker",
    ),
    Limit(
        "JOB_CHUNK_FRAMES",
        4,
        int,
        "frames",
        "frames per chunk: what one worker holds and runs at once, and the unit of a retry",
    ),
    Limit(
        "JOB_CHUNK_TIMEOUT_SECONDS",
        25,
        int,
        "seconds",
        "one chunk; under Heroku's 30 s between SIGTERM and SIGKILL, so a worker told to stop "
        "finishes its chunk",
    ),
    Limit(
        "JOB_PREPARE_TIMEOUT_SECONDS",
        600,
        int,
        "seconds",
        "decoding a job's whole upload into chunks",
    ),
    Limit("JOB_RETRIES", 2, int, "retries", "of a failed or abandoned job step"),
    Limit(
        "JOB_RESULT_TTL_SECONDS",
        3600,
        int,
        "seconds",
        "a finished job's results (and a failed job's record) are deleted this long after it ends",
    ),
    Limit(
        "JOB_MAX_LIFETIME_SECONDS",
        24 * 3600,
        int,
        "seconds",
        "nothing of any job outlives this, whatever happens to it",
    ),
)
LIMITS_BY_NAME = {limit.name: limit for limit in LIMITS}


def limit_default(name: str) -> int | float:
    """The default of the limit `name` (for engine modules' parameters; the app reads config)."""
    return LIMITS_BY_NAME[name].default


def _format_default(limit: Limit) -> str:
    if limit.type is float:
        return f"{limit.default:g}"
    return f"{limit.default:,}"


def limits_markdown() -> str:
    """The limits as the Markdown table in README.md."""
    lines = ["| variable | default | unit | what |", "| --- | --- | --- | --- |"]
    for limit in LIMITS:
        lines.append(
            f"| `{limit.name}` | {_format_default(limit)} | {limit.unit} | {limit.description} |"
        )
    return "\n".join(lines) + "\n"


class Config:
    """Settings, read from the environment when the app is created (not at import)."""

    def __init__(self) -> None:
        # Every size and time limit (LIMITS above, each with its reason).
        for limit in LIMITS:
            setattr(self, limit.name, limit.read())
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
        # How long a request that does not fit MEMORY_BUDGET_MB waits before its 503
        # (devolearn_web/admission.py).
        self.MEMORY_WAIT_SECONDS = _env_float("MEMORY_WAIT_SECONDS", 10.0)
        # A held result (RESULT_CACHE_MB) is dropped this long after its last use (result_cache.py).
        self.RESULT_CACHE_SECONDS = _env_float("RESULT_CACHE_SECONDS", 600.0)
        self.PRELOAD_MODELS = _env_flag("PRELOAD_MODELS")
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
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
        # A job's input and results, outside the static tree; deleted when no longer needed.
        self.JOBS_DIR = os.environ.get("JOBS_DIR", "").strip() or os.path.join(
            tempfile.gettempdir(), f"devolearn-jobs-{os.getuid()}"
        )
        # In-process jobs (no REDIS_URL): how many run at once beside the requests.
        self.JOB_THREADS = _env_int("JOB_THREADS", 1)

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


if __name__ == "__main__":  # the limits table for README.md
    print(limits_markdown(), end="")
