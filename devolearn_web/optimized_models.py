"""ONNX Runtime-optimised copies of the model files, made on this machine and kept in a cache.

ONNX Runtime's full optimisation lays convolution weights out for this CPU (NCHWc blocks) but
keeps the original weights as well, so a float32 FPN holds two copies once loaded. A file saved
already optimised, loaded with optimisation off, holds one: about 40 MB less per FPN at the
same speed (`python -m bench.ort_memory`, docs/performance.md). Such a file suits only the CPU
that made it, so it is made here, in a subprocess (the throwaway session never counts against
the worker's memory), and cached under a key of the model's sha256, the ONNX Runtime version
and the CPU. Any failure falls back to loading the original file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import onnxruntime

logger = logging.getLogger(__name__)

OPTIMISE_TIMEOUT_SECONDS = 120
_OPTIMISE_SCRIPT = """
import sys
import onnxruntime
options = onnxruntime.SessionOptions()
options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
options.optimized_model_filepath = sys.argv[2]
options.log_severity_level = 3
onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
"""


def optimized_copy(source: Path, sha256: str, cache_dir: Path) -> Path | None:
    """The cached optimised copy of `source` (whose sha256 was checked), made if missing;
    None when it cannot be made, so the caller loads the original."""
    key = hashlib.sha256(
        f"{sha256}|{onnxruntime.__version__}|{cpu_signature()}".encode()
    ).hexdigest()[:32]
    target = Path(cache_dir) / f"{key}.onnx"
    if target.is_file():
        return target
    partial = target.with_name(f"{key}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            [sys.executable, "-c", _OPTIMISE_SCRIPT, str(source), str(partial)],
            check=True,
            capture_output=True,
            timeout=OPTIMISE_TIMEOUT_SECONDS,
        )
        os.replace(partial, target)  # atomic: another worker never reads half a file
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("Could not make an optimised copy of %s (%s)", source.name, error)
        partial.unlink(missing_ok=True)
        return None
    logger.info("Made an optimised copy of %s in %s", source.name, target.parent)
    return target


def cpu_signature() -> str:
    """A short digest of this CPU's model and instruction-set flags."""
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return platform.machine() + platform.processor()
    wanted = [line for line in first_cpu.splitlines() if line.startswith(("model name", "flags"))]
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
