"""(2) Peak resident memory of one worker after serving all three models (VmHWM in /proc)."""

from __future__ import annotations

from bench.context import BenchContext
from bench.inputs import model_upload
from bench.models import MODEL_NAMES
from bench.report import Row
from bench.server import memory_kib, running_server

SECTION = "2 memory"
MAX_WORKER_PEAK_MB = 300
REQUESTS_PER_MODEL = 3


def measure_memory(context: BenchContext) -> list[Row]:
    """One fresh single-worker server per model set; every model served a few times."""
    configurations = [("as shipped", context.models_dir)]
    if context.has_int8:
        configurations.insert(0, ("float32 models", context.baseline_dir))
    rows = []
    for label, models_dir in configurations:
        with running_server(models_dir) as server:
            client = server.client()
            for _ in range(REQUESTS_PER_MODEL):
                for name in MODEL_NAMES:
                    client.predict(name, model_upload(name, context.samples_dir), f"{name}.png")
            client.close()
            (worker,) = server.worker_pids()
            worker_memory = memory_kib(worker)
            master_memory = memory_kib(server.process.pid)
        peak_mb = worker_memory["VmHWM"] / 1024
        rows.append(
            Row(
                SECTION,
                f"peak RSS of one worker after all 3 models ({label})",
                f"{peak_mb:.0f} MB",
                target=f"<= {MAX_WORKER_PEAK_MB} MB",
                met=peak_mb <= MAX_WORKER_PEAK_MB,
            )
        )
        rows.append(
            Row(
                SECTION,
                f"  gunicorn master (preloaded app, no models; {label})",
                f"{master_memory['VmHWM'] / 1024:.0f} MB",
            )
        )
    return rows
