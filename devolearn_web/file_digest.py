"""One SHA-256 of a file for the app, the pages and training: read in blocks, and cached."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

BLOCK_BYTES = 1 << 20


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file, read 1 MiB at a time (a model is never held twice in memory).

    Cached while the file keeps its size and modification time, so /healthz, the model pages
    and the registry hash each model once, and a replaced file is hashed again."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    # mtime and size are only the cache key: a replaced file gets a new entry.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
