"""(2) Peak resident memory of one worker (VmHWM in /proc): after serving all three models on
708x512 images, and in the worst case the memory budget is sized for, four 36-megapixel RGBA
uploads of the real sample at once (nucleus, membrane, nucleus, lineage)."""

from __future__ import annotations

import threading

from bench.context import BenchContext
from bench.inputs import model_upload, tiled_sample_png
from bench.report import Row
from bench.server import memory_kib, running_server
from devolearn_web.catalogue import MODEL_NAMES

SECTION = "2 memory"
MAX_WORKER_PEAK_MB = 300
REQUESTS_PER_MODEL = 3
# Issue 18: a 512 MB dyno, with room for the master.
MAX_WORST_CASE_PEAK_MB = 450
WORST_CASE_MODELS = ("nucleus", "membrane", "nucleus", "lineage")


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
    rows += measure_worst_case(context)
    return rows


def measure_worst_case(context: BenchContext) -> list[Row]:
    """Four 36 MP uploads at once against a fresh worker with the shipped models: its peak, and
    how many were answered (the others get a 503 with Retry-After from the memory budget)."""
    upload = tiled_sample_png(context.samples_dir)
    with running_server(context.models_dir) as server:
        statuses: list[int] = []

        def send(model: str) -> None:
            client = server.client()
            status, _ = client.post_file(f"/api/v1/predict/{model}", upload, "tiled.png")
            statuses.append(status)

        clients = [threading.Thread(target=send, args=(model,)) for model in WORST_CASE_MODELS]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        (worker,) = server.worker_pids()
        peak_mb = memory_kib(worker)["VmHWM"] / 1024
    answered = statuses.count(200)
    return [
        Row(
            SECTION,
            f"worst case: peak RSS of one worker, 4 x 36 MP RGBA at once "
            f"({answered} answered, {statuses.count(503)} told to retry)",
            f"{peak_mb:.0f} MB",
            target=f"<= {MAX_WORST_CASE_PEAK_MB} MB",
            met=peak_mb <= MAX_WORST_CASE_PEAK_MB and set(statuses) <= {200, 503},
        )
    ]
