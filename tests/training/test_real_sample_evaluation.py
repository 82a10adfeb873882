"""Evaluation on the real sample images: signal channel, counts, overlays (tiny ONNX models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.training

pytest.importorskip("onnxruntime")

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
needs_samples = pytest.mark.skipif(
    not (SAMPLES / "embryo_sample.png").exists() or not (SAMPLES / "seg_sample.jpg").exists(),
    reason=f"the real sample images are not in {SAMPLES} (../shared/samples)",
)


@needs_samples
def test_embryo_sample_is_read_from_its_green_channel():
    from devolearn_web.training.evaluate import real_sample_input
    from devolearn_web.training.images import GREEN

    full, small = real_sample_input(SAMPLES / "embryo_sample.png", GREEN)
    with Image.open(SAMPLES / "embryo_sample.png") as image:
        green = np.asarray(image)[..., 1].astype(np.float32)
    assert full.shape == green.shape and small.shape == (256, 256)
    expected = (green - green.min()) / (green.max() - green.min())
    assert np.allclose(full, expected)


@needs_samples
@pytest.mark.parametrize("model", ["nucleus", "membrane", "lineage"])
def test_real_sample_counts_and_overlay(model, tiny_models_dir, tmp_path):
    from devolearn_web.training.evaluate import evaluate_real_sample
    from devolearn_web.training.onnx_runner import OnnxModel

    overlay = tmp_path / f"{model}_real_overlay.png"
    onnx = OnnxModel(tiny_models_dir / f"{model}.onnx")
    result = evaluate_real_sample(model, onnx, SAMPLES, overlay)
    ((name, record),) = result.items()
    assert name == ("seg_sample.jpg" if model == "membrane" else "embryo_sample.png")
    assert record["channel"] == ("grayscale" if model == "membrane" else "green")
    if model == "lineage":
        assert set(record["populations"]) == set("AEMPCDZ")
        assert record["total"] == sum(record["populations"].values())
    else:
        assert isinstance(record["count"], int) and record["count"] >= 0
    assert isinstance(record["within_expected_range"], bool)
    with Image.open(overlay) as figure:
        assert figure.format == "PNG" and figure.size[0] > 200
