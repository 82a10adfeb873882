"""The bare model forwards the HTTP figures are compared with: ONNX Runtime and PyTorch eager."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MODEL_SIDE = 256
CHANNELS = {"membrane": 1, "nucleus": 1, "lineage": 3}


def example_input(name: str, seed: int = 0) -> np.ndarray:
    """float32 (1, C, 256, 256) in [0, 1]: one network input of the named model."""
    rng = np.random.default_rng(seed)
    return rng.random((1, CHANNELS[name], MODEL_SIDE, MODEL_SIDE), dtype=np.float32)


def ort_forward(path: Path, name: str, threads: int) -> Callable[[], object]:
    """One ONNX Runtime run of the file on one input, as a zero-argument callable."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Its threads spin during the run as usual, but stop when it returns: left spinning, they
    # would slow whichever contender runs next on the 2 cores (the HTTP request, mostly).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: example_input(name)}
    return lambda: session.run(None, feed)


def torch_forward(name: str, threads: int) -> Callable[[], object] | None:
    """One PyTorch eager forward (no_grad, eval) of the same architecture; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from devolearn_web.training.models import build_model

    torch.set_num_threads(threads)
    network = build_model(name).eval()
    tensor = torch.from_numpy(example_input(name))

    def forward() -> object:
        with torch.no_grad():
            return torch.sigmoid(network(tensor))

    return forward
