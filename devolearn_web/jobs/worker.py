"""`python -m devolearn_web.jobs.worker`: one RQ worker on the REDIS_URL queue (Procfile `worker:`).

Heroku's `heroku ps:scale worker=N` runs N of these; each takes one chunk at a time. SIGTERM
(a deploy, a restart) lets the chunk in hand finish, then the worker exits; RQ retries the
chunk of a worker that was killed outright.
"""

from __future__ import annotations

import os
import sys

# Set before ONNX Runtime is imported: no telemetry thread (see gunicorn.conf.py).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from devolearn_web.config import Config, configure_logging  # noqa: E402
from devolearn_web.jobs.rq_engine import QUEUE_NAME, ChunkWorker, connect  # noqa: E402

# How often a worker looks for chunks whose worker died (RQ's default is 10 minutes): with the
# chunk timeout and margin, a killed worker's chunk is retried within about a minute.
DEFAULT_MAINTENANCE_SECONDS = 15


def main() -> int:
    """Run a worker until SIGTERM; 1 without REDIS_URL."""
    config = Config()
    configure_logging(config.LOG_LEVEL)
    if not config.REDIS_URL:
        print("REDIS_URL is not set: there is no queue to work on.", file=sys.stderr)
        return 1
    interval = int(os.environ.get("JOB_WORKER_MAINTENANCE_SECONDS") or DEFAULT_MAINTENANCE_SECONDS)
    worker = ChunkWorker(
        [QUEUE_NAME], connection=connect(config.REDIS_URL), maintenance_interval=interval
    )
    worker.work(logging_level=config.LOG_LEVEL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
