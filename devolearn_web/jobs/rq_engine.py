"""The RQ engine: jobs on Redis (REDIS_URL), run by `rq worker` processes (Procfile `worker:`).

One RQ job prepares the upload and enqueues one RQ job per chunk of frames and an assembly job
that depends on them all. Chunks are retried (`Retry`) when they fail or when their worker dies:
RQ's StartedJobRegistry cleanup finds a chunk whose worker stopped heartbeating and retries it.
`ChunkWorker` runs chunks in its own process (no fork per chunk: the models load once), and
declares a chunk abandoned `HEARTBEAT_MARGIN_S` after its timeout instead of RQ's 60 s.
"""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.job import Job

from devolearn_web.errors import JobsUnavailable
from devolearn_web.jobs import work
from devolearn_web.jobs.settings import JobSettings
from devolearn_web.jobs.store import RedisStore
from devolearn_web.registry import ModelRegistry

logger = logging.getLogger(__name__)
QUEUE_NAME = "devolearn"
# Seconds past a chunk's timeout after which a silent worker's chunk is taken as abandoned.
HEARTBEAT_MARGIN_S = 10
# RQ's own record of a finished step (its result is None: results are in the job store). Not 0:
# rq 3.0.0 then deletes the job at once, and for a chunk retried after its worker died that
# raises ValueError ("Execution ... not found in Redis") and fails the chunk it just finished.
RQ_RESULT_TTL_S = 60
# Seconds a worker waits for its Redis connection before the web answers 503.
CONNECT_TIMEOUT_S = 2.0


def connect(url: str) -> Redis:
    """A Redis connection that fails fast instead of hanging a request."""
    return Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S * 5
    )


class RQEngine:
    """Submits and cancels jobs on an RQ queue; their steps run in the workers."""

    name = "rq"

    def __init__(self, settings: JobSettings, connection: Redis) -> None:
        self.settings = settings
        self.connection = connection
        self.store = RedisStore(connection)
        self.queue = Queue(QUEUE_NAME, connection=connection)

    def check_available(self) -> None:
        """JobsUnavailable unless Redis answers."""
        try:
            self.connection.ping()
        except RedisError as error:
            raise JobsUnavailable() from error

    def submit(self, job_id: str) -> None:
        self.queue.enqueue(
            rq_prepare,
            job_id,
            job_id=f"{job_id}-prepare",
            job_timeout=self.settings.prepare_timeout_s,
            retry=Retry(max=self.settings.retries) if self.settings.retries else None,
            on_failure=on_failure,
            result_ttl=RQ_RESULT_TTL_S,
            failure_ttl=self.settings.result_ttl_s,
        )

    def cancel(self, job_id: str) -> bool:
        """Cancelled in the store (chunks check it before running), RQ jobs not yet run dropped."""
        found = work.cancel(self.store, job_id, self.settings)
        for rq_job_id in _rq_job_ids(self.connection, job_id):
            try:
                Job.fetch(rq_job_id, connection=self.connection).cancel()
            except Exception:  # noqa: BLE001 - already run, gone or running: nothing to drop
                continue
        return found


def _rq_job_ids(connection: Redis, job_id: str) -> list[str]:
    ids = [f"{job_id}-prepare", f"{job_id}-assemble"]
    ids += [
        key.decode().rsplit(":", 1)[1]
        for key in connection.scan_iter(match=f"rq:job:{job_id}-chunk-*", count=1000)
        if b":" in key
    ]
    return ids


# What a worker process keeps between its jobs: the settings, and the models loaded once.
_worker_state: dict = {}


def _settings() -> JobSettings:
    if "settings" not in _worker_state:
        _worker_state["settings"] = JobSettings.from_environment()
    return _worker_state["settings"]


def _registry() -> ModelRegistry:
    if "registry" not in _worker_state:
        settings = _settings()
        _worker_state["registry"] = ModelRegistry(
            settings.models_dir,
            intra_op_threads=settings.intra_op_threads,
            optimized_cache_dir=settings.optimized_cache_dir,
        )
    return _worker_state["registry"]


def _store() -> RedisStore:
    return RedisStore(get_current_job().connection)


def rq_prepare(job_id: str) -> None:
    """RQ: decode and chunk the upload, then enqueue the chunks and the assembly after them."""
    store, settings = _store(), _settings()
    count = work.prepare(store, job_id, settings)
    if count == 0:
        return
    queue = Queue(QUEUE_NAME, connection=store.redis)
    retry = Retry(max=settings.retries) if settings.retries else None
    chunks = [
        queue.enqueue(
            rq_chunk,
            job_id,
            index,
            job_id=f"{job_id}-chunk-{index}",
            job_timeout=settings.chunk_timeout_s,
            retry=retry,
            on_failure=on_failure,
            result_ttl=RQ_RESULT_TTL_S,
            failure_ttl=settings.result_ttl_s,
        )
        for index in range(count)
    ]
    queue.enqueue(
        rq_assemble,
        job_id,
        job_id=f"{job_id}-assemble",
        depends_on=chunks,
        job_timeout=settings.prepare_timeout_s,
        retry=retry,
        on_failure=on_failure,
        result_ttl=RQ_RESULT_TTL_S,
        failure_ttl=settings.result_ttl_s,
    )


def rq_chunk(job_id: str, index: int) -> None:
    """RQ: run the model on one chunk of frames."""
    work.run_chunk(_store(), job_id, index, _registry(), _settings())


def rq_assemble(job_id: str) -> None:
    """RQ: the stack's answer from every chunk; the input deleted."""
    work.assemble(_store(), job_id, _settings(), _registry())


def on_failure(job: Job, connection: Redis, error_type, error, traceback) -> None:
    """RQ's failure callback: the job fails only once its retries are spent."""
    if job.retries_left:
        logger.warning("RQ job %s failed (%s); retrying", job.id, error_type.__name__)
        return
    job_id = job.args[0]
    if error is None or error_type.__name__ == "AbandonedJobError":
        error = "The analysis stopped: the worker running it was lost several times."
    elif error_type.__name__ == "JobTimeoutException" and job.id.endswith("-assemble"):
        error = (
            "Linking the recording's nuclei in 3D and through time took longer than the workers "
            f"allow ({_settings().prepare_timeout_s} s) several times; send fewer time points."
        )
    elif error_type.__name__ == "JobTimeoutException":
        error = (
            "A chunk of frames took longer than the workers allow "
            f"({_settings().chunk_timeout_s} s) several times; ask for fewer frames per chunk."
        )
    work.fail(RedisStore(connection), job_id, error, _settings())


class ChunkWorker(SimpleWorker):
    """An RQ worker that runs jobs in its own process, the models loaded once.

    SIGTERM (Heroku's dyno stop) lets the chunk in hand finish (a chunk's timeout is under
    Heroku's 30 s), then the worker exits; a second SIGTERM or SIGKILL leaves it to be retried."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # A SimpleWorker cannot heartbeat while the job runs in its only thread: the job's
        # entry must outlive its timeout, and no more, so a killed worker's chunk is retried soon.
        if job.timeout and job.timeout > 0:
            return int(job.timeout - working_time) + HEARTBEAT_MARGIN_S
        return super().get_heartbeat_ttl(job, working_time)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker wakes this often to look for abandoned chunks (RQ's own: ~7 minutes).
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))
