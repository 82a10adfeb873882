"""Answers made from a held result (devolearn_web.result_cache): a new threshold, a minimum
object size, excluded objects or a download, with no upload and no network run.

The `min_area` and `exclude` fields are read by devolearn_web.options, as first answers read them.
"""

from __future__ import annotations

import time

from flask import Response, current_app, jsonify

from devolearn_web.admission import admit
from devolearn_web.analysis import Answer
from devolearn_web.downloads import build_download, check_format
from devolearn_web.errors import BadParameter
from devolearn_web.options import PredictOptions, filter_for
from devolearn_web.pipelines import (
    LineageResult,
    SegmentationResult,
    segment_output,
)
from devolearn_web.result_cache import get_result_cache
from devolearn_web.stack_pipeline import frame_json, stack_json
from devolearn_web.views.frames import respond


def answer_held(options: PredictOptions) -> Response:
    """A held result's JSON answer or download at a new threshold and filter."""
    cache = get_result_cache()
    if cache is None:
        raise BadParameter("This server holds no results (RESULT_CACHE_MB=0): send the file.")
    key = options.result
    held = cache.get(key)
    facts = held.stack
    frames = facts.count if facts is not None else 1
    filters = options.filters(facts.count if facts is not None else None)
    requested = options.format
    threshold = held.threshold if options.threshold is None else options.threshold
    pixels = max((output.width * output.height for output in held.outputs), default=0)
    # Made at the upload's size: one frame at a time for JSON, all of them for a download.
    admit(12 * pixels * (frames if requested != "json" else 1), "this held result")
    started = time.perf_counter()
    results = list(held.lineage) or [
        segment_output(output, threshold, filter_for(filters, index))
        for index, output in enumerate(held.outputs)
    ]
    if requested != "json":
        check_format(requested, held.task, frames)
        positions = facts.positions if facts else [{}]
        axis = facts.frame_axis if facts else "Z"
        calibration = facts.calibration if facts else getattr(results[0], "calibration", None)
        return respond(
            Answer(file=build_download(requested, held.stem, results, positions, axis, calibration))
        )
    include_figures = options.figures
    extra = {"result_id": key, "result_held_s": round(cache.seconds)}
    if facts is None:
        answer = lean_json(results[0])
        if include_figures and isinstance(results[0], SegmentationResult):
            answer.update(held_figures(results[0]))
        return jsonify({**answer, **extra})
    max_frames_with_images = current_app.config["MAX_FRAMES_WITH_IMAGES"]
    with_images = facts.count <= max_frames_with_images
    frames_json = []
    for index, result in enumerate(results):
        frame = frame_json(result, index, facts.positions[index], with_images=False)
        if include_figures and with_images and isinstance(result, SegmentationResult):
            frame.update(held_figures(result))
        frames_json.append(frame)
    timings = {"total": (time.perf_counter() - started) * 1000}
    answer = stack_json(
        held.model, facts, frames_json, timings, with_images, max_frames_with_images
    )
    return jsonify({**answer, **extra})


def lean_json(result: SegmentationResult | LineageResult) -> dict:
    """The result's JSON without its probability map (the page holds it from the first answer)."""
    answer = (
        result.to_json() if isinstance(result, LineageResult) else frame_json(result, 0, {}, False)
    )
    answer.pop("index", None)
    answer.pop("position", None)
    return answer


def held_figures(result: SegmentationResult) -> dict:
    """The figures, their input picture left for the page to fill in from its first answer."""
    from devolearn_web.figures import HELD_INPUT, build_figures

    return build_figures(result, None, shown=HELD_INPUT)
