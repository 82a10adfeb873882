"""The real sample images through the app's own path, so a card's count is the page's count.

The file being evaluated is served by a ModelRegistry from a temporary models folder, under a
card built as `card` would build it; the sample goes through `analysis.analyse_image` exactly as
an upload without options does (signal channel, working grid or embryo cut-out, mirror views).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devolearn_web.analysis import analyse_image
from devolearn_web.catalogue import entry
from devolearn_web.file_digest import file_sha256
from devolearn_web.pipelines import LineageResult
from devolearn_web.registry import ModelRegistry
from devolearn_web.training.cards import build_card
from devolearn_web.training.images import GREEN
from devolearn_web.training.onnx_runner import onnx_opset
from devolearn_web.training.overlays import save_object_overlay, save_population_overlay
from devolearn_web.training.specs import DEFAULT_THRESHOLD, get_spec

# What the samples hold, counted by eye (no ground truth exists): the ranges.
REAL_SAMPLE_RANGES = {"nucleus": (60, 120), "membrane": (4, 7), "lineage": (50, 150)}


@dataclass(frozen=True)
class RealSample:
    """A real image and the channel that carries its signal (None: grayscale); the app picks
    the channel itself, this one names it in the record."""

    file: str
    channel: int | None


REAL_SAMPLES = {
    "nucleus": RealSample("embryo_sample.png", GREEN),
    "membrane": RealSample("seg_sample.jpg", None),
    "lineage": RealSample("embryo_sample.png", GREEN),
}


def served_card(
    model: str, onnx_path: Path, threshold: float, calibration: dict | None = None
) -> dict:
    """The card the app would serve the file under: the spec's framing, the threshold the
    figures are measured at (segmentation), the count calibration (lineage)."""
    return build_card(
        get_spec(model),
        sha256=file_sha256(onnx_path),
        opset=onnx_opset(onnx_path),
        activation="none",  # exported files end in a sigmoid (shipping.write_trained_card)
        training_data={},
        metrics={"threshold": threshold},
        hyperparameters={},
        reproduce="",
        limitations=[],
        calibration=calibration,
    )


@contextmanager
def serving(model: str, onnx_path: Path, card: dict, threads: int = 1) -> Iterator[ModelRegistry]:
    """A ModelRegistry that serves onnx_path as `model` under `card` (a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="devolearn-evaluate-") as folder:
        models_dir = Path(folder)
        (models_dir / f"{model}.onnx").symlink_to(Path(onnx_path).resolve())
        (models_dir / f"{model}.json").write_text(json.dumps(card), encoding="utf-8")
        registry = ModelRegistry(models_dir, intra_op_threads=threads)
        try:
            yield registry
        finally:
            registry.close()


def evaluate_real_sample(
    model: str,
    onnx_path: Path,
    samples_dir: Path,
    overlay_path: Path,
    threshold: float = DEFAULT_THRESHOLD,
    calibration: dict | None = None,
    threads: int = 1,
) -> dict:
    """The app's answer on the model's real sample image, with an overlay saved for the docs."""
    sample = REAL_SAMPLES[model]
    path = samples_dir / sample.file
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --samples-dir")
    card = served_card(model, onnx_path, threshold, calibration)
    with serving(model, onnx_path, card, threads) as registry:
        result, image = analyse_image(registry, model, path.read_bytes(), path.name)
    if isinstance(result, LineageResult):
        populations = {name: int(count) for name, count in result.populations.items()}
        save_population_overlay(image.pixels, populations, overlay_path)
        record = {"populations": populations, "total": int(result.total)}
        value = record["total"]
    else:
        noun = entry(model).page.count_noun
        title = f"{sample.file}: {result.count} {noun} (threshold {threshold})"
        # Cells between bright outlines are shown filled; nuclei (solid blobs) as outlines.
        fill = entry(model).expects_outlines
        save_object_overlay(image.pixels, result.labels, title, overlay_path, fill=fill)
        record = {"count": result.count}
        value = result.count
    low, high = REAL_SAMPLE_RANGES[model]
    record.update(
        channel={None: "grayscale", GREEN: "green"}[sample.channel],
        expected_range=[low, high],
        within_expected_range=bool(low <= value <= high),
        overlay=overlay_path.as_posix(),
    )
    return {sample.file: record}
