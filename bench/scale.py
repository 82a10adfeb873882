"""(8) The working grid: its cost next to the forwards it needs, a large tiled image, and the
count error on simulated images at 0.5x, 1x and 2x their usual size (new path and old squash).
"""

from __future__ import annotations

import io

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
MAX_COUNT_ERROR_PERCENT = 10.0
MAX_LINEAGE_ERROR_PERCENT = 5.0


def measure_scale(context: BenchContext) -> list[Row]:
    rows: list[Row] = []
    with running_server(context.models_dir) as server:
        for name in SEGMENTATION_MODELS:
            rows.append(_request_against_forwards(context, server, name))
    rows += _large_tiled_image(context)
    rows += _scale_sweep(context)
    return rows


def _registry(context: BenchContext):
    from devolearn_web.registry import ModelRegistry

    return ModelRegistry(context.models_dir)


def _request_against_forwards(context: BenchContext, server, name: str) -> Row:
    """The HTTP request against the bare forwards it runs, at the same working-grid size."""
    from devolearn_web.imaging import decode_image
    from devolearn_web.pipelines import plan_segmentation
    from devolearn_web.scale import NETWORK_MULTIPLE, working_shape

    upload = model_upload(name, context.samples_dir)
    registry = _registry(context)
    model = registry.get(name)
    image = decode_image(upload, f"{name}.png")
    threshold = float(model.card["output"]["default_threshold"])
    from devolearn_web.scale import ScaleRequest

    plan = plan_segmentation(model, image, threshold, ScaleRequest())
    passes = 1 if plan.probability is not None else 2
    rows, cols = (
        -(-side // NETWORK_MULTIPLE) * NETWORK_MULTIPLE
        for side in working_shape(plan.grid, image.pixels.shape)
    )
    tensor = np.random.default_rng(0).random((1, 1, rows, cols), dtype=np.float32)
    client = server.client()

    def forwards() -> None:
        for _ in range(passes):
            model.session.run(None, {"input": tensor})

    timing = alternate(
        {"http": lambda: client.predict(name, upload, f"{name}.png"), "ort": forwards},
        context.repeats,
        context.warmup,
    )
    ratio = timing["http"].median / timing["ort"].median
    return Row(
        SECTION,
        f"{name}: HTTP request on a 708x512 upload, working grid {rows}x{cols}, {passes} pass(es)",
        format_ms(timing["http"].median),
        format_ms(timing["http"].p95),
        f"bare ORT forwards on that grid ({format_ms(timing['ort'].median)})",
        ratio,
        f"<= {MAX_RATIO_TO_FORWARDS}x",
        ratio <= MAX_RATIO_TO_FORWARDS,
    )


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
    count = 4 if context.quick else 10
    rows = []
    for name in ("nucleus", "membrane", "lineage"):
        samples = list(_simulated(name, count))
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


def _simulated(name: str, count: int):
    """(uint8 image, truth) pairs from the test seeds: counts, or lineage populations."""
    from devolearn_web.segmentation import MIN_OBJECT_AREA_AT_MODEL_SCALE
    from devolearn_web.training.images import resize_labels, separate_touching_labels
    from devolearn_web.training.metrics import count_objects
    from devolearn_web.training.simulator.datasets import (
        MEMBRANE_FIRST_CELLS,
        MEMBRANE_LAST_CELLS,
        spread_times,
    )
    from devolearn_web.training.simulator.embryo import A_TARGET, simulate_embryo
    from devolearn_web.training.simulator.render_membrane import (
        MembraneLook,
        membrane_labels,
        random_membrane_view,
        render_membrane_slice,
        slice_geometry,
    )
    from devolearn_web.training.simulator.render_nucleus import (
        NucleusLook,
        random_projection_view,
        random_stack_view,
        render_nucleus_projection,
        render_nucleus_stack,
    )

    def counted(labels: np.ndarray) -> int:
        """As the evaluation counts the truth: on the 256x256 grid, touching objects apart."""
        small = separate_touching_labels(resize_labels(labels.astype(np.int32), 256))
        return count_objects(small, MIN_OBJECT_AREA_AT_MODEL_SCALE)

    per_seed = max(1, count // 2)
    for seed in (2000, 2001):
        embryo = simulate_embryo(seed)
        rng = np.random.default_rng((seed, 23))
        start = embryo.time_when_a_reaches(2)
        end = embryo.last_grid_time_with_a_at_most(A_TARGET)
        if name == "membrane":  # the stages the membrane data covers (3DMMS: 4 to 350 cells)
            start = embryo.grid_time_with_total(MEMBRANE_FIRST_CELLS)
            end = embryo.grid_time_with_total(MEMBRANE_LAST_CELLS)
        for minutes in spread_times(embryo, start, end, per_seed):
            if name == "lineage":
                view = random_projection_view(rng, embryo, (315, 585))
                image, _ = render_nucleus_projection(
                    embryo, minutes, view, NucleusLook.draw(rng), rng
                )
                yield image, embryo.populations_at(minutes)
            elif name == "nucleus":
                view = random_stack_view(rng, embryo, (35, 512, 708))
                stack, labels = render_nucleus_stack(
                    embryo, minutes, view, NucleusLook.draw(rng), rng
                )
                z = int(rng.integers(12, 23))
                yield _to_8_bit(stack[z]), counted(labels[z])
            else:
                view = random_membrane_view(rng, embryo, (40, 256, 356))
                geometry = slice_geometry(embryo, minutes, view, float(rng.integers(14, 26)))
                image = render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng)
                yield _to_8_bit(image), counted(membrane_labels(geometry, view))


def _to_8_bit(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    span = float(image.max() - image.min()) or 1.0
    return np.rint((image - image.min()) / span * 255).astype(np.uint8)


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
        card = registry.card("lineage")["output"]
        maxima = np.array(card["maxima"], dtype=np.float64)
        found = np.array([result.populations[key] for key in card["lineages"]], dtype=np.float64)
        wanted = np.array([truth[key] for key in card["lineages"]], dtype=np.float64)
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
    threshold = float(model.card["output"]["default_threshold"])
    errors = []
    for image, truth in samples:
        pixels = normalise_for_model(resize_image(image.astype(np.float32) / 255, (256, 256)))
        output = model.session.run(None, {"input": pixels[None, None]})[0]
        probability = np.squeeze(apply_output_activation(output, model.card))
        count = int(label_instances(name, probability, threshold).max())
        errors.append(100.0 * abs(count - truth) / max(truth, 1))
    return f"old 256x256 squash: {np.mean(errors):.1f}%"
