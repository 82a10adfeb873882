"""`python -m bench`: run the chosen sections and print every figure in one table."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.browser import measure_browser
from bench.coldstart import measure_cold_start
from bench.context import BenchContext
from bench.frames import measure_frames
from bench.inputs import DEFAULT_SAMPLES_DIR
from bench.jobs import measure_jobs
from bench.latency import measure_latency
from bench.memory import measure_memory
from bench.models import float_only_copy
from bench.report import Row, markdown_table
from bench.scale import measure_scale
from bench.server import REPOSITORY_ROOT
from bench.session_options import measure_session_options
from bench.throughput import measure_throughput
from devolearn_web.catalogue import MODEL_NAMES

SECTIONS: dict[str, Callable[[BenchContext], list[Row]]] = {
    "latency": measure_latency,
    "memory": measure_memory,
    "coldstart": measure_cold_start,
    "throughput": measure_throughput,
    "frames": measure_frames,
    "browser": measure_browser,
    "options": measure_session_options,
    "scale": measure_scale,
    "jobs": measure_jobs,
}


def parse_sections(raw: str | None) -> list[str]:
    """The comma-separated --only value as section names, in the table's order."""
    if not raw:
        return list(SECTIONS)
    chosen = {word.strip() for word in raw.split(",") if word.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    return [name for name in SECTIONS if name in chosen]


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share), as the server
    counts them in gunicorn.conf.py: the bare forwards then use what a worker would."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        type=parse_sections,
        default=list(SECTIONS),
        help=f"comma list of {list(SECTIONS)}",
    )
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--models-dir", type=Path, default=REPOSITORY_ROOT / "models")
    parser.add_argument("--samples-dir", type=Path, default=DEFAULT_SAMPLES_DIR)
    parser.add_argument(
        "--threads",
        type=int,
        default=usable_cores(),
        help="threads of the bare ORT and PyTorch forwards (default: every usable core)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run, then print the table (and what was run, so it can be reproduced)."""
    args = build_parser().parse_args(argv)
    missing = [n for n in MODEL_NAMES if not (args.models_dir / f"{n}.json").is_file()]
    if missing:
        print(f"error: {args.models_dir} lacks the cards of {', '.join(missing)}", file=sys.stderr)
        return 1
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="devolearn-bench-") as scratch:
        context = BenchContext(
            models_dir=args.models_dir.resolve(),
            baseline_dir=float_only_copy(args.models_dir.resolve(), Path(scratch) / "float32"),
            samples_dir=args.samples_dir,
            quick=args.quick,
            threads=args.threads,
        )
        for name in args.only:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows += SECTIONS[name](context)
    print(markdown_table(rows))
    settings = {
        k: os.environ[k] for k in ("ORT_INTRA_OP_THREADS", "GUNICORN_THREADS") if k in os.environ
    }
    print(
        f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; models {args.models_dir}; "
        f"server settings from the environment: {settings or 'none (gunicorn.conf.py defaults)'}; "
        f"{usable_cores()} usable CPUs; {'--quick' if args.quick else 'full'} run; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    return 0
