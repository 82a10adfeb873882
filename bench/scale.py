"""(8) The working grid: its cost next to the forwards it needs, a large tiled image, and the
count error on simulated images at 0.5x, 1x and 2x their usual size (new path and old squash).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from unittest import mock

import numpy as np
from PIL import Image

from bench.context import BenchContext
from bench.inputs import model_upload
from bench.report import Row, format_ms
from bench.server import memory_kib, running_server
from bench.stats import alternate

SECTION = "8 scale"
SEGMENTATION_MODELS = ("nucleus", "membrane")
# The request also finds the embryo, measures objects and resizes maps back to the upload.
MAX_RATIO_TO_FORWARDS = 2.0
LARGE_SIDE = 2048
LARGE_SAMPLE_FACTOR = 0.4  # embryo_sample.png's nuclei (~20 px) become ~8 px
SWEEP_FACTORS = (0.5, 1.0, 2.0)
# Test images per model: enough to hold the rare early slices of one or two nuclei, where a
# wrong grid costs hundreds of percent (ten held none).
SWEEP_IMAGES = 80
MAX_COUNT_ERROR_PERCENT = 10.0
MAX_LINEAGE_ERROR_PERCENT = 5.0


def measure_scale(context: BenchContext) -> list[Row]:
    rows: list[Row] = []
    threads = str(_worker_threads())
    with running_server(context.models_dir, ORT_INTRA_OP_THREADS=threads) as server:
        for name in SEGMENTATION_MODELS:
            rows.append(_request_against_forwards(context, server, name))
    rows += _large_tiled_image(context)
    rows += _scale_sweep(context)
    return rows


def _worker_threads() -> int:
    """ONNX Runtime threads of the one worker the server runs (gunicorn.conf.py's share)."""
    return max(1, len(os.sched_getaffinity(0)))


def _registry(context: BenchContext, threads: int = 1):
    from devolearn_web.registry import ModelRegistry

    return ModelRegistry(context.models_dir, intra_op_threads=threads)


def _request_against_forwards(context: BenchContext, server, name: str) -> Row:
    """The HTTP request against the bare forwards it runs: the same tensors, the same threads."""
    from devolearn_web.imaging import decode_image
    from devolearn_web.pipelines import predict

    upload = model_upload(name, context.samples_dir)
    registry = _registry(context, _worker_threads())
    model = registry.get(name)
    with _recorded_network_inputs() as shapes:
        predict(registry, name, decode_image(upload, f"{name}.png"))
    rng = np.random.default_rng(0)
    tensors = [rng.random(shape, dtype=np.float32) for shape in shapes]
    client = server.client()

    def forwards() -> None:
        for tensor in tensors:
            model.session.run(None, {model.card.input.name: tensor})

    timing = alternate(
        {"http": lambda: client.predict(name, upload, f"{name}.png"), "ort": forwards},
        context.repeats,
        context.warmup,
    )
    ratio = timing["http"].median / timing["ort"].median
    described = ", ".join("x".join(map(str, shape)) for shape in shapes)
    return Row(
        SECTION,
        f"{name}: HTTP request on a 708x512 upload; its network inputs {described}",
        format_ms(timing["http"].median),
        format_ms(timing["http"].p95),
        f"bare ORT forwards on those inputs ({format_ms(timing['ort'].median)})",
        ratio,
        f"<= {MAX_RATIO_TO_FORWARDS}x",
        ratio <= MAX_RATIO_TO_FORWARDS,
    )


@contextlib.contextmanager
def _recorded_network_inputs() -> Iterator[list[tuple[int, ...]]]:
    """The shapes of the tensors the app hands the network while the block runs."""
    from devolearn_web import pipelines

    shapes: list[tuple[int, ...]] = []
    run_model = pipelines.run_model

    def recording(model, tensor, *args, **kwargs):
        shapes.append(tensor.shape)
        return run_model(model, tensor, *args, **kwargs)

    with mock.patch.object(pipelines, "run_model", recording):
        yield shapes


def _large_sample_png(context: BenchContext) -> bytes:
    """2048x2048: embryo_sample.png shrunk so its nuclei are ~8 px, tiled edge to edge."""
    path = context.samples_dir / "embryo_sample.png"
    with Image.open(path) as opened:
        green = opened.getchannel("G")
        small = green.resize(
            (round(green.width * LARGE_SAMPLE_FACTOR), round(green.height * LARGE_SAMPLE_FACTOR)),
            Image.Resampling.BILINEAR,
        )
    tile = np.asarray(small)
    reps = (-(-LARGE_SIDE // tile.shape[0]), -(-LARGE_SIDE // tile.shape[1]))
    canvas = np.tile(tile, reps)[:LARGE_SIDE, :LARGE_SIDE]
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def _large_tiled_image(context: BenchContext) -> list[Row]:
    """A fresh worker's time and peak memory for 2048x2048 of small nuclei (diameter given)."""
    if not (context.samples_dir / "embryo_sample.png").exists():
        return []
    upload = _large_sample_png(context)
    diameter = str(round(20 * LARGE_SAMPLE_FACTOR))
    with running_server(context.models_dir) as server:
        client = server.client()
        client.predict("nucleus", upload, "large.png", diameter=diameter)  # warm the model
        timing = alternate(
            {"large": lambda: client.predict("nucleus", upload, "large.png", diameter=diameter)},
            max(1, context.rounds),
            0,
        )
        (worker,) = server.worker_pids()
        peak_mb = memory_kib(worker)["VmHWM"] / 1024
    return [
        Row(
            SECTION,
            f"nucleus: 2048x2048 of ~8 px nuclei, diameter={diameter} (tiled working grid)",
            format_ms(timing["large"].median),
            compared_with=f"worker peak RSS {peak_mb:.0f} MB",
        )
    ]


def _scale_sweep(context: BenchContext) -> list[Row]:
    """Mean count error (segmentation) and error in % of each maximum (lineage) on simulated
    test embryos shown at 0.5x, 1x and 2x; the old 256x256 squash beside them at 1x."""
    try:
        from devolearn_web.training.simulator.embryo import simulate_embryo  # noqa: F401
    except ImportError:
        return []
    registry = _registry(context)
    count = 4 if context.quick else SWEEP_IMAGES
    rows = []
    for name in ("nucleus", "membrane", "lineage"):
        samples = list(_simulated(registry, name, count))
        for factor in SWEEP_FACTORS:
            error = _mean_error(registry, name, samples, factor)
            limit = MAX_LINEAGE_ERROR_PERCENT if name == "lineage" else MAX_COUNT_ERROR_PERCENT
            what = (
                "largest mean error, % of a lineage's maximum"
                if name == "lineage"
                else ("mean count error")
            )
            rows.append(
                Row(
                    SECTION,
                    f"{name}: {what}, {len(samples)} simulated test images at {factor:g}x",
                    f"{error:.1f}%",
                    compared_with=_old_path_error(registry, name, samples) if factor == 1 else "",
                    target=f"<= {limit:g}%",
                    met=error <= limit,
                )
            )
    return rows


def _simulated(registry, name: str, count: int):
    """(uint8 image, truth) pairs from the test seeds: counts, or lineage populations, counted
    as the model's own training labels count them."""
    from devolearn_web.training.simulator.held_out import held_out_images, learned_visible_caps

    caps = learned_visible_caps(registry.card(name))
    return held_out_images(name, count, stream=23, visible_caps=caps)


def _resized(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return image
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _mean_error(registry, name: str, samples, factor: float) -> float:
    from devolearn_web.imaging import decode_image
    from devolearn_web.pipelines import predict

    errors = []
    for image, truth in samples:
        buffer = io.BytesIO()
        Image.fromarray(_resized(image, factor)).save(buffer, format="PNG")
        result = predict(registry, name, decode_image(buffer.getvalue(), "x.png"))
        errors.append(_error(name, result, truth, registry))
    if name == "lineage":
        return float(np.max(np.mean(errors, axis=0)))
    return float(np.mean(errors))


def _error(name: str, result, truth, registry) -> np.ndarray | float:
    if name == "lineage":
        output = registry.card("lineage").output
        maxima = np.array(output.maxima, dtype=np.float64)
        found = np.array([result.populations[key] for key in output.lineages], dtype=np.float64)
        wanted = np.array([truth[key] for key in output.lineages], dtype=np.float64)
        return 100.0 * np.abs(found - wanted) / maxima
    return 100.0 * abs(result.count - truth) / max(truth, 1)


def _old_path_error(registry, name: str, samples) -> str:
    """The same images through the old path: squashed to 256x256, objects on that grid."""
    if name == "lineage":
        return ""
    from devolearn_web.imaging import normalise_for_model, resize_image
    from devolearn_web.pipelines import apply_output_activation
    from devolearn_web.segmentation import label_instances

    model = registry.get(name)
    threshold = model.card.output.default_threshold
    errors = []
    for image, truth in samples:
        pixels = normalise_for_model(resize_image(image.astype(np.float32) / 255, (256, 256)))
        output = model.session.run(None, {"input": pixels[None, None]})[0]
        probability = np.squeeze(apply_output_activation(output, model.card))
        count = int(label_instances(name, probability, threshold).max())
        errors.append(100.0 * abs(count - truth) / max(truth, 1))
    return f"old 256x256 squash: {np.mean(errors):.1f}%"
