"""(3) Cold start: from spawning gunicorn to the first prediction answered."""

from __future__ import annotations

import shutil
import tempfile
import time

from bench.context import BenchContext
from bench.inputs import model_upload
from bench.report import Row, format_ms
from bench.server import START_TIMEOUT_S, start_server, stop_server
from bench.stats import Summary

SECTION = "3 cold start"
MAX_COLD_START_S = 1.5
FIRST_MODEL = "nucleus"


def first_prediction_seconds(models_dir, upload: bytes, **settings: str) -> float:
    """Seconds from spawning the server to the first answered prediction."""
    server = start_server(models_dir, **settings)
    client = server.client()
    try:
        while time.perf_counter() - server.started < START_TIMEOUT_S:
            try:
                client.predict(FIRST_MODEL, upload, "first.png")
                return time.perf_counter() - server.started
            except OSError:  # not listening yet
                client.close()
                time.sleep(0.005)
        raise RuntimeError("no prediction answered in time")
    finally:
        client.close()
        stop_server(server)


def measure_cold_start(context: BenchContext) -> list[Row]:
    """Models loaded on first use (default) and preloaded in the worker, alternating."""
    upload = model_upload(FIRST_MODEL, context.samples_dir)
    variants = {
        "models loaded on first request (default)": {},
        "PRELOAD_MODELS=1 (all 3 loaded in the worker first)": {"PRELOAD_MODELS": "1"},
        # A dyno's first boot: its optimised copies of the models are made on the first load.
        "first boot, empty optimised-model cache": {"_fresh_cache": "1"},
    }
    if context.has_int8:
        variants["float32 models, loaded on first request"] = {"_baseline": "1"}
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(context.rounds + (0 if context.quick else 1)):
        for label, settings in variants.items():
            settings = dict(settings)
            fresh_cache = None
            if settings.pop("_fresh_cache", None):
                fresh_cache = tempfile.mkdtemp(prefix="bench-ort-cache-")
                settings["ORT_OPTIMIZED_CACHE_DIR"] = fresh_cache
            models_dir = (
                context.baseline_dir if settings.pop("_baseline", None) else context.models_dir
            )
            seconds[label].append(first_prediction_seconds(models_dir, upload, **settings))
            if fresh_cache:
                shutil.rmtree(fresh_cache, ignore_errors=True)
    rows = []
    for label, values in seconds.items():
        summary = Summary.of(values)
        rows.append(
            Row(
                SECTION,
                f"spawn -> first {FIRST_MODEL} answer: {label}",
                format_ms(summary.median * 1000),
                format_ms(summary.p95 * 1000) if summary.count > 1 else "",
                target=f"<= {MAX_COLD_START_S} s",
                met=summary.median <= MAX_COLD_START_S,
            )
        )
    return rows
