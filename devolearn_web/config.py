"""Every setting read from the environment in one place, with safe defaults; logs go to stdout."""

from __future__ import annotations

import logging
import os
import secrets
import sys
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


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


class Config:
    """Settings, read from the environment when the app is created (not at import)."""

    def __init__(self) -> None:
        # A random key per process is safe here: the app keeps no sessions or logins.
        self.SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
        self.MODELS_DIR = Path(os.environ.get("DEVOLEARN_MODELS_DIR") or DEFAULT_MODELS_DIR)
        self.ORT_INTRA_OP_THREADS = _env_int("ORT_INTRA_OP_THREADS", 1)
        self.ORT_INTER_OP_THREADS = _env_int("ORT_INTER_OP_THREADS", 1)
        self.MAX_UPLOAD_BYTES = _env_int("MAX_UPLOAD_BYTES", 25_000_000)
        self.MAX_IMAGE_PIXELS = _env_int("MAX_IMAGE_PIXELS", 40_000_000)
        self.PRELOAD_MODELS = _env_flag("PRELOAD_MODELS")
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()

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
