"""Run an exported ONNX file with ONNX Runtime on the CPU, as the web app does."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_opset(path: Path) -> int:
    """The default-domain opset an ONNX file was written for."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


class OnnxModel:
    """One ONNX Runtime session; `run` feeds float32 batches (N, C, H, W) through it."""

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run the export command first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = (self.session.get_inputs()[0].name, self.session.get_outputs()[0].name)
        if names != ("input", "output"):
            raise ValueError(f"{path}: expected input 'input' and output 'output', got {names}")

    def run(self, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Outputs for all inputs, computed `batch_size` at a time: float32."""
        inputs = inputs.astype(np.float32)
        outputs = [
            self.session.run(["output"], {"input": inputs[i : i + batch_size]})[0]
            for i in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(outputs)
