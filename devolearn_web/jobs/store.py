"""A job's record (state, progress, error) and its blobs (input, chunks, results), in one place.

Two stores with the same methods: `RedisStore` (shared by web and worker dynos, which share no
disk) and `FolderStore` (one machine, the in-process engine). Every key of a job carries an
expiry from its creation (`max_lifetime_s`), shortened to the result TTL once it ends, so
nothing a visitor sent outlives its job even when a dyno dies mid-way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

STATES = ("queued", "running", "finished", "failed", "cancelled")
ENDED = ("finished", "failed", "cancelled")
# Pieces an upload is copied in: never the whole file in memory.
COPY_PIECE_BYTES = 1024 * 1024


class JobStore(Protocol):
    """What the job steps and the views need from storage."""

    def create(self, job_id: str, record: dict, lifetime_s: int) -> None: ...
    def get(self, job_id: str) -> dict | None: ...
    def update(self, job_id: str, **fields) -> bool: ...
    def update_live(self, job_id: str, **fields) -> bool: ...
    def mark_chunk_done(self, job_id: str, index: int) -> int: ...
    def chunks_done(self, job_id: str) -> set[int]: ...
    def put_blob(self, job_id: str, name: str, data: bytes) -> None: ...
    def put_blob_from_file(self, job_id: str, name: str, source: BinaryIO) -> None: ...
    def get_blob(self, job_id: str, name: str) -> bytes | None: ...
    def blob_file(self, job_id: str, name: str): ...
    def delete_blob(self, job_id: str, name: str) -> None: ...
    def delete_blobs(self, job_id: str) -> None: ...
    def expire(self, job_id: str, seconds: int) -> None: ...
    def blob_names(self, job_id: str) -> list[str]: ...


def _pieces(source: BinaryIO) -> Iterator[bytes]:
    while piece := source.read(COPY_PIECE_BYTES):
        yield piece


class RedisStore:
    """Records as Redis hashes (one JSON value per field), blobs as Redis strings."""

    prefix = "devolearn:job:"

    def __init__(self, connection) -> None:
        self.redis = connection

    def _key(self, job_id: str, *parts: str) -> str:
        return ":".join((self.prefix + job_id, *parts))

    def _keys(self, job_id: str) -> list[str]:
        blobs = [self._key(job_id, "blob", name) for name in self.blob_names(job_id)]
        return [self._key(job_id), self._key(job_id, "done"), self._key(job_id, "blobs"), *blobs]

    def create(self, job_id: str, record: dict, lifetime_s: int) -> None:
        """Save a new record; every key of the job expires after lifetime_s at the latest."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={field: json.dumps(value) for field, value in record.items()})
            pipe.expire(key, lifetime_s)
            pipe.execute()

    def get(self, job_id: str) -> dict | None:
        """The record, or None for an unknown or expired job."""
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        return {field.decode(): json.loads(value) for field, value in raw.items()}

    def update(self, job_id: str, **fields) -> bool:
        """Change fields of an existing record; False (and nothing written) when it is gone."""
        # A Lua script: a chunk finishing after a DELETE must not bring the record back.
        script = (
            "if redis.call('exists', KEYS[1]) == 1 then "
            "redis.call('hset', KEYS[1], unpack(ARGV)) return 1 end return 0"
        )
        args = [item for field, value in fields.items() for item in (field, json.dumps(value))]
        return bool(self.redis.eval(script, 1, self._key(job_id), *args))

    def update_live(self, job_id: str, **fields) -> bool:
        """As update, but only while the job has not ended (a DELETE mid-step must stand)."""
        ended = ",".join(json.dumps(state) for state in ENDED)
        script = (
            "if redis.call('exists', KEYS[1]) == 0 then return 0 end "
            "local state = redis.call('hget', KEYS[1], 'state') "
            f"for _, ended in ipairs({{{ended}}}) do if state == ended then return 0 end end "
            "redis.call('hset', KEYS[1], unpack(ARGV)) return 1"
        )
        args = [item for field, value in fields.items() for item in (field, json.dumps(value))]
        return bool(self.redis.eval(script, 1, self._key(job_id), *args))

    def mark_chunk_done(self, job_id: str, index: int) -> int:
        """Record chunk `index` as done (idempotent: a retried chunk counts once); how many are."""
        key = self._key(job_id, "done")
        with self.redis.pipeline() as pipe:
            pipe.sadd(key, index)
            pipe.ttl(self._key(job_id))
            pipe.scard(key)
            _, ttl, count = pipe.execute()
        self.redis.expire(key, max(1, int(ttl)))
        return int(count)

    def chunks_done(self, job_id: str) -> set[int]:
        return {int(index) for index in self.redis.smembers(self._key(job_id, "done"))}

    def _track(self, pipe, job_id: str, name: str) -> None:
        ttl = max(1, int(self.redis.ttl(self._key(job_id))))
        pipe.sadd(self._key(job_id, "blobs"), name)
        pipe.expire(self._key(job_id, "blobs"), ttl)
        pipe.expire(self._key(job_id, "blob", name), ttl)

    def put_blob(self, job_id: str, name: str, data: bytes) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self._key(job_id, "blob", name), data)
            self._track(pipe, job_id, name)
            pipe.execute()

    def put_blob_from_file(self, job_id: str, name: str, source: BinaryIO) -> None:
        """Copy a file into a blob a piece at a time (an upload may be gigabytes)."""
        key = self._key(job_id, "blob", name)
        self.redis.delete(key)
        for piece in _pieces(source):
            self.redis.append(key, piece)
        with self.redis.pipeline() as pipe:
            self._track(pipe, job_id, name)
            pipe.execute()

    def get_blob(self, job_id: str, name: str) -> bytes | None:
        return self.redis.get(self._key(job_id, "blob", name))

    @contextmanager
    def blob_file(self, job_id: str, name: str) -> Iterator[Path | None]:
        """The blob copied a piece at a time to a temporary file (deleted after), or None."""
        key = self._key(job_id, "blob", name)
        if not self.redis.exists(key):
            yield None
            return
        with tempfile.NamedTemporaryFile(prefix="devolearn-job-") as target:
            start = 0
            while piece := self.redis.getrange(key, start, start + COPY_PIECE_BYTES - 1):
                target.write(piece)
                start += len(piece)
            target.flush()
            yield Path(target.name)

    def blob_names(self, job_id: str) -> list[str]:
        return sorted(name.decode() for name in self.redis.smembers(self._key(job_id, "blobs")))

    def delete_blob(self, job_id: str, name: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self._key(job_id, "blob", name))
            pipe.srem(self._key(job_id, "blobs"), name)
            pipe.execute()

    def delete_blobs(self, job_id: str) -> None:
        """Delete every blob of the job (its input, chunks and results); the record stays."""
        names = self.blob_names(job_id)
        keys = [self._key(job_id, "blob", name) for name in names]
        self.redis.delete(*keys, self._key(job_id, "blobs"))

    def expire(self, job_id: str, seconds: int) -> None:
        """Every key of the job (record and blobs) is deleted `seconds` from now."""
        with self.redis.pipeline() as pipe:
            for key in self._keys(job_id):
                pipe.expire(key, max(1, seconds))
            pipe.execute()


class FolderStore:
    """A folder per job: record.json, done/<index>, blobs/<name>; expired folders swept."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def _folder(self, job_id: str) -> Path:
        if not job_id.isalnum():  # ids are uuid hex; never a path from a visitor
            raise ValueError("not a job id")
        return self.root / job_id

    def _write_record(self, folder: Path, record: dict) -> None:
        temporary = folder / "record.json.tmp"
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, folder / "record.json")

    def create(self, job_id: str, record: dict, lifetime_s: int) -> None:
        self.sweep()
        folder = self._folder(job_id)
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        (folder / "done").mkdir(exist_ok=True)
        self._write_record(folder, {**record, "_delete_at": time.time() + lifetime_s})

    def get(self, job_id: str) -> dict | None:
        self.sweep()
        try:
            path = self._folder(job_id) / "record.json"
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        record.pop("_delete_at", None)
        return record

    def _raw(self, folder: Path) -> dict:
        return json.loads((folder / "record.json").read_text(encoding="utf-8"))

    def update(self, job_id: str, **fields) -> bool:
        folder = self._folder(job_id)
        with self._lock:
            try:
                record = self._raw(folder)
            except (OSError, ValueError):
                return False
            record.update(fields)
            self._write_record(folder, record)
        return True

    def update_live(self, job_id: str, **fields) -> bool:
        """As update, but only while the job has not ended (a DELETE mid-step must stand)."""
        folder = self._folder(job_id)
        with self._lock:
            try:
                record = self._raw(folder)
            except (OSError, ValueError):
                return False
            if record.get("state") in ENDED:
                return False
            record.update(fields)
            self._write_record(folder, record)
        return True

    def mark_chunk_done(self, job_id: str, index: int) -> int:
        done = self._folder(job_id) / "done"
        if not done.is_dir():
            return 0
        (done / str(index)).touch()
        return len(self.chunks_done(job_id))

    def chunks_done(self, job_id: str) -> set[int]:
        try:
            return {int(path.name) for path in (self._folder(job_id) / "done").iterdir()}
        except OSError:
            return set()

    def _blob(self, job_id: str, name: str) -> Path:
        return self._folder(job_id) / "blobs" / name

    def put_blob(self, job_id: str, name: str, data: bytes) -> None:
        path = self._blob(job_id, name)
        if path.parent.is_dir():  # a cancelled job's folder is gone: write nothing
            path.write_bytes(data)

    def put_blob_from_file(self, job_id: str, name: str, source: BinaryIO) -> None:
        with self._blob(job_id, name).open("wb") as target:
            shutil.copyfileobj(source, target, COPY_PIECE_BYTES)

    def get_blob(self, job_id: str, name: str) -> bytes | None:
        try:
            return self._blob(job_id, name).read_bytes()
        except OSError:
            return None

    @contextmanager
    def blob_file(self, job_id: str, name: str) -> Iterator[Path | None]:
        """The blob's own file (read in place), or None."""
        path = self._blob(job_id, name)
        yield path if path.is_file() else None

    def blob_names(self, job_id: str) -> list[str]:
        try:
            return sorted(path.name for path in (self._folder(job_id) / "blobs").iterdir())
        except OSError:
            return []

    def delete_blob(self, job_id: str, name: str) -> None:
        self._blob(job_id, name).unlink(missing_ok=True)

    def delete_blobs(self, job_id: str) -> None:
        for name in self.blob_names(job_id):
            self._blob(job_id, name).unlink(missing_ok=True)

    def expire(self, job_id: str, seconds: int) -> None:
        self.update(job_id, _delete_at=time.time() + seconds)

    def sweep(self, now: float | None = None) -> None:
        """Delete the folders of jobs whose time is up (results past their TTL included)."""
        now = time.time() if now is None else now
        try:
            folders = list(self.root.iterdir())
        except OSError:
            return
        for folder in folders:
            try:
                delete_at = self._raw(folder).get("_delete_at", 0)
            except (OSError, ValueError):
                continue  # being created, or not ours
            if delete_at <= now:
                shutil.rmtree(folder, ignore_errors=True)
