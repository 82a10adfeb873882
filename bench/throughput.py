"""(4) Requests per second with one and two workers under 8 concurrent clients."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

from bench.context import BenchContext
from bench.inputs import model_upload
from bench.report import Row, format_ms
from bench.server import Server, running_server
from bench.stats import Summary, percentile
from devolearn_web.catalogue import MODEL_NAMES

SECTION = "4 throughput"
CLIENTS = 8
MIN_SCALING = 1.7


def load_window(server: Server, uploads: dict[str, bytes], seconds: float) -> tuple[float, list]:
    """(requests per second, latencies in ms) of CLIENTS threads posting for `seconds`.

    Each client cycles through the three models, starting at a different one, so the mix is even.
    """
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def client_loop(offset: int) -> None:
        client = server.client()
        turn = offset
        try:
            while time.perf_counter() < stop_at:
                name = MODEL_NAMES[turn % len(MODEL_NAMES)]
                started = time.perf_counter()
                client.predict(name, uploads[name], f"{name}.png")
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                turn += 1
        except (OSError, RuntimeError) as error:
            errors.append(error)
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}")
    # Requests finishing after stop_at still count, over the time they really took.
    return len(latencies) / (time.perf_counter() - started), latencies


# (label, workers, ONNX Runtime threads per run): the cores split between the workers, and one
# single-worker alternative with one thread per run.
CONFIGURATIONS = (
    ("1 worker, 2 ORT threads", 1, 2),
    ("1 worker, 1 ORT thread", 1, 1),
    ("2 workers, 1 ORT thread each", 2, 1),
)
ONE_WORKER, TWO_WORKERS = CONFIGURATIONS[0][0], CONFIGURATIONS[2][0]


def measure_throughput(context: BenchContext) -> list[Row]:
    """Windows of load on each configuration's server, alternating, after a warm-up."""
    uploads = {name: model_upload(name, context.samples_dir) for name in MODEL_NAMES}
    seconds = context.window_seconds
    rates: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGURATIONS}
    latencies: dict[str, list[float]] = {label: [] for label, _, _ in CONFIGURATIONS}
    with ExitStack() as stack:
        servers = {
            label: stack.enter_context(
                running_server(
                    context.models_dir, workers=workers, ORT_INTRA_OP_THREADS=str(threads)
                )
            )
            for label, workers, threads in CONFIGURATIONS
        }
        for server in servers.values():
            load_window(server, uploads, 2.0)  # every worker loads every model
        for _ in range(context.rounds):
            for label, server in servers.items():
                rate, window_latencies = load_window(server, uploads, seconds)
                rates[label].append(rate)
                latencies[label] += window_latencies
    rows = []
    for label, _, _ in CONFIGURATIONS:
        rows.append(
            Row(
                SECTION,
                f"{label}, {CLIENTS} clients, 3 models mixed: requests/s",
                f"{Summary.of(rates[label]).median:.2f}/s",
            )
        )
        rows.append(
            Row(
                SECTION,
                f"  {label}: request latency under that load",
                format_ms(percentile(latencies[label], 50)),
                format_ms(percentile(latencies[label], 95)),
            )
        )
    one, two = Summary.of(rates[ONE_WORKER]).median, Summary.of(rates[TWO_WORKERS]).median
    best_one = max(Summary.of(rates[label]).median for label, w, _ in CONFIGURATIONS if w == 1)
    rows.append(
        Row(
            SECTION,
            "2 workers / 1 worker throughput",
            "",
            compared_with=ONE_WORKER,
            ratio=two / one,
            target=f">= {MIN_SCALING}x",
            met=two >= MIN_SCALING * one,
        )
    )
    rows.append(
        Row(
            SECTION,
            "2 workers / the better 1-worker setting",
            "",
            compared_with="best 1 worker",
            ratio=two / best_one,
            target=f">= {MIN_SCALING}x",
            met=two >= MIN_SCALING * best_one,
        )
    )
    return rows
