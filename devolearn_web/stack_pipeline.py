"""Stacks and movies through a model: frames in batches, per-frame results, one JSON answer.

The answer has the same shape for a z-stack and a movie:
{"model", "kind": "stack" | "movie", "axes": {...}, "frames": [<single-image result + index and
position>...], "count_per_frame" (segmentation) or "populations_per_frame" (lineage),
"notes", "timings_ms"}. Frames go to ONNX Runtime `batch_size` (STACK_BATCH_SIZE) at a time
(one call per batch, not per frame); `answer_events` yields progress after each batch so a page
can show a bar.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import numpy as np
import tifffile

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.catalogue import LINEAGE_ORDER, training_range_sentence
from devolearn_web.config import limit_default
from devolearn_web.errors import BadParameter
from devolearn_web.imaging import DEFAULT_MAX_PIXELS, DecodedImage
from devolearn_web.movies import decode_movie, sniff_movie
from devolearn_web.pipelines import (
    LineageResult,
    SegmentationResult,
    SharedGrid,
    plan_shared_grid,
    predict_batch,
    resolve_threshold,
    rounded_timings,
)
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import AUTOMATIC_SCALE, ScaleRequest
from devolearn_web.segmentation import MAX_LABEL_16_BIT
from devolearn_web.stacks import (
    DEFAULT_MAX_STACK_FRAMES,
    DEFAULT_MAX_STACK_VOXELS,
    FrameStack,
    read_tiff_stack,
    tiff_frame_count,
)

# Defaults of STACK_BATCH_SIZE and MAX_FRAMES_WITH_IMAGES (config.LIMITS); the app passes its own.
BATCH_SIZE = limit_default("STACK_BATCH_SIZE")
# Per-frame probability maps and figures go into the JSON up to this many frames (a z-stack of
# tens of slices); past it (a 389-frame movie) frames carry numbers only.
MAX_FRAMES_WITH_IMAGES = limit_default("MAX_FRAMES_WITH_IMAGES")
TIMING_STAGES = ("decode", "preprocess", "inference", "postprocess")

Result = SegmentationResult | LineageResult
# Presentation a view passes in (figures.build_figures): a frame's Plotly dicts from its result
# and image. The engine calls it, so it never imports the presentation modules itself.
FrameFigures = Callable[[Result, DecodedImage], dict]


# A lineage answer's range flags, and what a stack's note says of the frames they mark.
RANGE_FLAGS = {
    "outside_training_range": "are past the model's training range "
    f"({training_range_sentence('>')} cells): their counts are an extrapolation.",
    "at_end_of_training_range": "are at the end of the model's training range "
    f"({training_range_sentence('close to')} cells), where its counts stop rising: those "
    "embryos may be older and their counts too low.",
}


def has_frames(data: bytes) -> bool:
    """True for a movie, an animated GIF or a TIFF with more than one frame."""
    return sniff_movie(data) is not None or tiff_frame_count(data) > 1


def load_frames(
    data: bytes,
    axes: str | None = None,
    channel: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_STACK_VOXELS,
    max_frames: int = DEFAULT_MAX_STACK_FRAMES,
    parsed: tifffile.TiffFile | None = None,
) -> FrameStack:
    """Decode a movie or multi-page TIFF (in memory) into a FrameStack; `parsed`: the TIFF
    already parsed."""
    if sniff_movie(data) is not None:
        if axes is not None and axes != "T":
            raise BadParameter("A movie's frames are time points: its axes cannot be changed.")
        return decode_movie(data, max_pixels, max_frames, max_voxels, channel)
    return read_tiff_stack(data, axes, channel, max_voxels, max_frames, parsed)


def predict_stack(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    threshold: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    batch_seconds: float | None = None,
    batch_size: int = BATCH_SIZE,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
    reference: DecodedImage | None = None,
) -> Iterator[tuple[int, Result]]:
    """(frame index, result) for every frame, in order, the model run once per batch.

    `deadline` bounds the whole stack; `batch_seconds`, when given, bounds each batch instead
    (a streamed answer sends bytes after every batch, which is what keeps a router waiting).
    `reference`: the whole stack's reference image, when `stack` is only a part of it (a job's
    chunk), so every part runs on the grid the whole stack would.
    """
    shared_grid = stack_grid(registry, name, stack, threshold, deadline, scale_request, reference)
    for start in range(0, stack.count, batch_size):
        indices = range(start, min(start + batch_size, stack.count))
        images = [stack.image(index) for index in indices]
        batch_deadline = Deadline(batch_seconds) if batch_seconds else deadline
        results = predict_batch(
            registry, name, images, threshold, batch_deadline, scale_request, shared_grid
        )
        yield from zip(indices, results, strict=True)


def stack_grid(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    threshold: float | None,
    deadline: Deadline,
    scale_request: ScaleRequest,
    reference: DecodedImage | None = None,
) -> SharedGrid | None:
    """The working grid every frame of a segmentation stack runs on (None for lineage).

    One grid, because the slices of one embryo share one scale: a slice near the embryo's top
    or bottom shows a small cross-section and a few dim caps, and sized on its own it was
    enlarged until noise read as nuclei. The grid is chosen on the whole embryo (the middle
    time point's slices projected), at the stack's own pixel size when its file has one."""
    model = registry.get(name)
    if not model.card.is_segmentation or (reference is None and stack.count < 2):
        return None
    threshold = resolve_threshold(threshold, model.card)
    reference = reference or reference_image(stack)
    return plan_shared_grid(model, reference, threshold, scale_request, deadline)


def reference_frames(stack: FrameStack) -> list[int]:
    """The frames a stack's grid is chosen on: the middle time point's z-slices (the whole
    embryo), or the middle frame of a stack without z."""
    middle = stack.positions[stack.count // 2]
    if "z" not in middle:
        return [stack.count // 2]
    time_point = middle.get("time")
    return [index for index, at in enumerate(stack.positions) if at.get("time") == time_point]


def reference_image(stack: FrameStack, indices: list[int] | None = None) -> DecodedImage:
    """The brightest value of the reference frames at each pixel, as a decoded image."""
    indices = reference_frames(stack) if indices is None else indices
    projection = stack.pixels(indices[0])
    for index in indices[1:]:
        np.maximum(projection, stack.pixels(index), out=projection)
    calibration = None if stack.calibration is None else stack.calibration.without_z()
    return DecodedImage(projection, stack.width, stack.height, stack.mode, (), calibration)


def answer_events(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    threshold: float | None = None,
    figures: FrameFigures | None = None,
    decode_ms: float = 0.0,
    deadline: Deadline = NO_DEADLINE,
    batch_seconds: float | None = None,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
    adjust: Callable[[int, Result], Result] | None = None,
    finish: Callable[[list[Result]], dict] | None = None,
    batch_size: int = BATCH_SIZE,
    max_frames_with_images: int = MAX_FRAMES_WITH_IMAGES,
) -> Iterator[dict]:
    """{"progress": {"done", "total"}} after each batch, then {"result": <the stack's JSON>}.

    `figures` draws a frame's figures (up to max_frames_with_images frames); `adjust` changes
    each frame's result (dropped objects); `finish` gets them all and gives fields to add to
    the answer (a held result's id)."""
    frames: list[dict] = []
    kept: list[Result] = []
    totals = dict.fromkeys(TIMING_STAGES, 0.0)
    totals["decode"] = decode_ms
    with_images = stack.count <= max_frames_with_images
    started = time.perf_counter()
    results = predict_stack(
        registry,
        name,
        stack,
        threshold,
        deadline,
        batch_seconds,
        batch_size=batch_size,
        scale_request=scale_request,
    )
    for index, result in results:
        if adjust is not None:
            result = adjust(index, result)
        if finish is not None:
            kept.append(result)
        frame = frame_json(result, index, stack.positions[index], with_images)
        if figures is not None and with_images:
            frame.update(figures(result, stack.image(index, keep_calibration=True)))
        frames.append(frame)
        for stage in TIMING_STAGES[1:]:
            totals[stage] += result.timings_ms.get(stage, 0.0)
        if (index + 1) % batch_size == 0 or index + 1 == stack.count:
            yield {"progress": {"done": index + 1, "total": stack.count}}
    totals["total"] = decode_ms + (time.perf_counter() - started) * 1000
    answer = stack_json(name, stack, frames, totals, with_images, max_frames_with_images)
    if finish is not None:
        answer.update(finish(kept))
    yield {"result": answer}


def frame_json(result: Result, index: int, position: dict, with_images: bool) -> dict:
    """One frame's single-image JSON, plus its index and position; the PNG only when asked."""
    if isinstance(result, LineageResult):
        answer = result.to_json()
    else:
        answer = result.to_json(with_probability=with_images)
    answer.update(index=index, position=dict(position))
    return answer


def stack_json(
    name: str,
    stack: FrameStack,
    frames: list[dict],
    timings: dict,
    with_images: bool,
    max_frames_with_images: int = MAX_FRAMES_WITH_IMAGES,
) -> dict:
    """The whole answer for a stack or movie (see the module docstring)."""
    answer: dict = {"model": name, "kind": stack.kind, "axes": dict(stack.axes)}
    answer.update(width=stack.width, height=stack.height, frame_count=stack.count)
    notes = list(stack.notes)
    if not with_images:
        notes.append(
            f"{stack.count} frames: counts for every frame; probability maps and figures are "
            f"sent for stacks of up to {max_frames_with_images} frames (downloads have them all)."
        )
    if frames and "populations" in frames[0]:
        answer["populations_per_frame"] = {
            key: [frame["populations"][key] for frame in frames] for key in LINEAGE_ORDER
        }
        answer["total_per_frame"] = [frame["total"] for frame in frames]
        for flag, meaning in RANGE_FLAGS.items():
            flagged = [frame["index"] for frame in frames if frame[flag]]
            answer[f"{flag}_frames"] = flagged
            if flagged:
                notes.append(f"{len(flagged)} of {stack.count} frames {meaning}")
    else:
        answer["threshold"] = frames[0]["threshold"] if frames else None
        answer["count_per_frame"] = [frame["count"] for frame in frames]
        if stack.calibration is not None:
            # Stated once for the stack: its frames are decoded without it.
            answer["calibration"] = stack.calibration.to_json()
            notes.append(stack.calibration.note())
    answer.update(
        frames=frames,
        notes=notes,
        timings_ms=rounded_timings(timings),
    )
    return answer


def collect_results(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    threshold: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
) -> list[Result]:
    """Every frame's result, labels as uint16 (when they fit) to halve what a long stack holds."""
    results = []
    stack_results = predict_stack(
        registry, name, stack, threshold, deadline, scale_request=scale_request
    )
    for _, result in stack_results:
        if isinstance(result, SegmentationResult):
            if result.labels.max(initial=0) <= MAX_LABEL_16_BIT:
                result.labels = result.labels.astype(np.uint16)
        results.append(result)
    return results


def frame_axis(stack: FrameStack) -> str:
    """The axes ImageJ files are written with: 'TZ' for a time-lapse of z-stacks, 'T', or 'Z'."""
    slider = stack.axes.get("slider")
    return {("time", "z"): "TZ", ("time",): "T"}.get(tuple(slider or ()), "Z")


def max_projection(stack: FrameStack) -> FrameStack:
    """One frame per time point: the brightest value through its z-slices (the file's dtype)."""
    groups: dict[object, list[int]] = {}
    for index, position in enumerate(stack.positions):
        groups.setdefault(position.get("time"), []).append(index)
    data = np.stack([stack.data[indices].max(axis=0) for indices in groups.values()])
    timed = "time" in (stack.axes.get("slider") or ())
    positions = tuple({"time": time} if timed else {} for time in groups)
    slices = len(next(iter(groups.values())))
    note = (
        f"Each time point's {slices} z-slices were projected into one image (the brightest value "
        "through z), as the lineage model's training images were whole-embryo projections. "
        "To analyse every slice alone, read the stack again with axes T (on a page) or send "
        "projection=none (API)."
    )
    axes = {
        **stack.axes,
        "slider": ["time"] if timed else [],
        "frames": len(groups),
        "projection": f"max over z ({slices} slices)",
    }
    calibration = None if stack.calibration is None else stack.calibration.without_z()
    return dataclasses.replace(
        stack,
        data=data,
        positions=positions,
        axes=axes,
        notes=stack.notes + (note,),
        calibration=calibration,
    )
