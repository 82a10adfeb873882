"""`python -m bench.ort_memory`: memory and forward time of the two FPN sessions, three ways.

Each way runs in a fresh process (so one way's peak is not another's): the shipped files with
ONNX Runtime's full optimisation (what the app does), with `ORT_ENABLE_EXTENDED` (no NCHWc
layout transform), and the copy the app makes (`devolearn_web.optimized_models`: saved already
optimised, loaded with optimisation off). Prints one line per way and repeat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from devolearn_web.file_digest import file_sha256
from devolearn_web.optimized_models import optimized_copy

WAYS = ("full optimisation at load", "extended optimisation", "optimised copy (the app)")
FPN_MODELS = ("nucleus", "membrane")

_CHILD = r"""
import json, resource, sys, time
import numpy as np, onnxruntime as ort
way, folder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 1e6
levels = {"full": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "preoptimised": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
before = rss_mb()
sessions = []
for name in ("nucleus", "membrane"):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = False
    options.graph_optimization_level = levels[way]
    sessions.append(ort.InferenceSession(f"{folder}/{name}.onnx", options,
                                         providers=["CPUExecutionProvider"]))
tensor = np.random.default_rng(0).random((1, 1, 256, 256), dtype=np.float32)
for session in sessions:
    session.run(None, {"input": tensor})
loaded = rss_mb()
times = []
for _ in range(15):
    started = time.perf_counter()
    sessions[0].run(None, {"input": tensor})
    times.append(time.perf_counter() - started)
print(json.dumps({"sessions_mb": loaded - before,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                  "forward_ms": float(np.median(times) * 1000)}))
"""


def measure(way: str, folder: Path, threads: int) -> dict:
    """One way's figures, from a fresh Python process."""
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, way, str(folder), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Alternate the three ways `--repeats` times and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.ort_memory")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        optimised = Path(scratch)
        for name in FPN_MODELS:
            # The app's own way of making the copy (a subprocess, as in a worker).
            source = args.models_dir / f"{name}.onnx"
            digest = file_sha256(source)
            copy = optimized_copy(source, digest, optimised / "cache")
            if copy is None:
                raise SystemExit(f"could not make an optimised copy of {source}")
            copy.rename(optimised / f"{name}.onnx")
        folders = {"full": args.models_dir, "extended": args.models_dir, "preoptimised": optimised}
        for repeat in range(args.repeats):
            for way, label in zip(folders, WAYS, strict=True):
                figures = measure(way, folders[way], args.threads)
                print(
                    f"repeat {repeat + 1}  {label:<28}  two FPN sessions "
                    f"{figures['sessions_mb']:6.0f} MB  process peak {figures['peak_mb']:6.0f} MB"
                    f"  nucleus forward {figures['forward_ms']:5.1f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
