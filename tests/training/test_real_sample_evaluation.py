"""Evaluation on the real sample images: the app's own path, counts, overlays."""

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


MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


@needs_samples
def test_the_app_reads_embryo_sample_from_its_green_channel_as_the_record_says():
    from devolearn_web.imaging import decode_image
    from devolearn_web.training.images import GREEN
    from devolearn_web.training.real_samples import REAL_SAMPLES

    assert REAL_SAMPLES["nucleus"].channel == REAL_SAMPLES["lineage"].channel == GREEN
    path = SAMPLES / "embryo_sample.png"
    decoded = decode_image(path.read_bytes(), path.name)
    with Image.open(path) as image:
        green = np.asarray(image)[..., 1].astype(np.float32) / 255
    assert np.array_equal(decoded.pixels, green)


@needs_samples
@pytest.mark.parametrize("model", ["nucleus", "membrane", "lineage"])
def test_real_sample_counts_and_overlay(model, tiny_models_dir, tmp_path):
    from devolearn_web.training.real_samples import evaluate_real_sample

    overlay = tmp_path / f"{model}_real_overlay.png"
    result = evaluate_real_sample(model, tiny_models_dir / f"{model}.onnx", SAMPLES, overlay)
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


@needs_samples
@pytest.mark.parametrize("model", ["nucleus", "membrane", "lineage"])
def test_the_evaluations_real_sample_count_is_the_apps(model, tmp_path):
    """The card said 87 nuclei and 116 cells where the app gives 77 and 111 on the same file:
    the evaluation squashed the sample to 256x256 instead of going the app's way."""
    from devolearn_web.imaging import decode_image
    from devolearn_web.pipelines import predict
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.training.real_samples import REAL_SAMPLES, evaluate_real_sample

    registry = ModelRegistry(MODELS_DIR)
    card = registry.card(model)
    path = SAMPLES / REAL_SAMPLES[model].file
    served = predict(registry, model, decode_image(path.read_bytes(), path.name))
    evaluated = evaluate_real_sample(
        model,
        MODELS_DIR / card.file,
        SAMPLES,
        tmp_path / "overlay.png",
        threshold=card.output.default_threshold,
        calibration=card["output"].get("calibration"),
    )
    record = evaluated[path.name]
    if model == "lineage":
        assert record["populations"] == served.populations
        assert record["total"] == served.total
    else:
        assert record["count"] == served.count


@needs_samples
def test_evaluate_can_measure_the_real_samples_alone(tiny_models_dir, tmp_path):
    from devolearn_web.training.cli import main

    folders = {name: tmp_path / name for name in ("data", "runs", "models", "images")}
    arguments = ["evaluate", "--model", "nucleus", "--real-samples-only", "--threshold", "0.5"]
    arguments += ["--onnx", str(tiny_models_dir / "nucleus.onnx"), "--samples-dir", str(SAMPLES)]
    arguments += ["--data-root", str(folders["data"]), "--runs-root", str(folders["runs"])]
    arguments += ["--models-dir", str(folders["models"])]
    arguments += ["--docs-images-dir", str(folders["images"])]
    assert main(arguments) == 0
    assert (folders["images"] / "nucleus_real_overlay.png").exists()
    assert not (folders["runs"] / "nucleus" / "metrics.json").exists()  # no test split measured
