"""(extra) ONNX Runtime session options: peak memory and forward time per choice, side by side.

Each choice runs in a fresh child process (`python -m bench.session_options CHOICE FILES...`),
which loads the three served files the way the app does (from the path), runs each a few times
and prints its peak RSS and median forward times as JSON; choices alternate round by round.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from bench.context import BenchContext
from bench.forwards import example_input
from bench.report import Row, format_ms
from bench.server import memory_kib
from devolearn_web.catalogue import MODEL_NAMES

SECTION = "x session options"
CHOICES = {
    "arena on, 1 thread": {"arena": True, "threads": 1},
    "arena off, 1 thread": {"arena": False, "threads": 1},
    "arena on, 2 threads": {"arena": True, "threads": 2},
    "arena off, 2 threads": {"arena": False, "threads": 2},
}
RUNS_PER_MODEL = 10


def child(choice: dict, files: list[str]) -> dict:
    """In the child: load every file with the choice's options, time forwards, report."""
    import onnxruntime

    forward_ms = {}
    sessions = []
    for name, path in zip(MODEL_NAMES, files, strict=True):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = choice["threads"]
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = choice["arena"]
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        sessions.append(session)
        feed = {session.get_inputs()[0].name: example_input(name)}
        session.run(None, feed)
        times = []
        for _ in range(RUNS_PER_MODEL):
            started = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - started) * 1000)
        forward_ms[name] = statistics.median(times)
    import os

    return {"peak_kib": memory_kib(os.getpid())["VmHWM"], "forward_ms": forward_ms}


def measure_session_options(context: BenchContext) -> list[Row]:
    """Every choice, alternating, `rounds` times; medians of peak memory and forward times."""
    files = [str(context.served_file(name)) for name in MODEL_NAMES]
    results: dict[str, list[dict]] = {label: [] for label in CHOICES}
    for _ in range(context.rounds):
        for label, choice in CHOICES.items():
            output = subprocess.run(
                [sys.executable, "-m", "bench.session_options", json.dumps(choice), *files],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[label].append(json.loads(output.strip().splitlines()[-1]))
    reference = "arena on, 1 thread"
    rows = []
    for label, runs in results.items():
        peak = statistics.median(run["peak_kib"] for run in runs) / 1024
        forwards = {
            name: statistics.median(run["forward_ms"][name] for run in runs) for name in MODEL_NAMES
        }
        described = ", ".join(f"{name} {format_ms(ms)}" for name, ms in forwards.items())
        total = sum(forwards.values())
        reference_total = sum(
            statistics.median(run["forward_ms"][name] for run in results[reference])
            for name in MODEL_NAMES
        )
        rows.append(
            Row(
                SECTION,
                f"{label}: 3 sessions + forwards, peak {peak:.0f} MB; {described}",
                format_ms(total),
                compared_with=reference if label != reference else "",
                ratio=total / reference_total if label != reference else None,
            )
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]), sys.argv[2:])))
