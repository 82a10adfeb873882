"""The in-process engine: jobs run in a background thread pool of the web process (no Redis).

For one machine and one process (`make run`, one gunicorn worker): the same steps and states as
on RQ, the record in a folder any process on the machine can read, but the work in this process.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from devolearn_web.jobs import work
from devolearn_web.jobs.settings import JobSettings
from devolearn_web.jobs.store import FolderStore
from devolearn_web.registry import ModelRegistry

logger = logging.getLogger(__name__)


class LocalEngine:
    """Runs each job's steps in order in a pool of `threads` threads."""

    name = "in-process"

    def __init__(self, settings: JobSettings, registry: ModelRegistry, threads: int = 1) -> None:
        self.settings = settings
        self.store = FolderStore(settings.jobs_dir)
        self.registry = registry
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use, not at start: gunicorn forks after the app is built, and a pool's
        # threads do not survive fork().
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="devolearn-job")
            return self._pool

    def check_available(self) -> None:
        """Always available: nothing outside this process is needed."""

    def submit(self, job_id: str) -> None:
        self._executor().submit(self.run, job_id)

    def run(self, job_id: str) -> None:
        """Prepare, every chunk, assemble; a failure anywhere fails the job with its sentence."""
        try:
            count = work.prepare(self.store, job_id, self.settings)
            for index in range(count):
                if not work.is_live(self.store, job_id):
                    return  # cancelled between chunks
                work.run_chunk(self.store, job_id, index, self.registry, self.settings)
            work.assemble(self.store, job_id, self.settings, self.registry)
        except Exception as error:  # noqa: BLE001 - any failure is the job's, reported on it
            work.fail(self.store, job_id, error, self.settings)

    def cancel(self, job_id: str) -> bool:
        return work.cancel(self.store, job_id, self.settings)

    def shutdown(self) -> None:
        """Wait for the jobs in flight (tests; a process exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
