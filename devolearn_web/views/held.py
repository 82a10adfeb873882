"""Answers made from a held result (devolearn_web.result_cache): a new threshold, a minimum
object size, excluded objects or a download, with no upload and no network run.

Also the `min_area` and `exclude` fields, which first answers read too.
"""

from __future__ import annotations

import math
import time

from flask import Response, current_app, jsonify
from werkzeug.datastructures import MultiDict

from devolearn_web.admission import admit
from devolearn_web.downloads import build_download, check_format
from devolearn_web.errors import BadParameter
from devolearn_web.pipelines import (
    LineageResult,
    ObjectFilter,
    SegmentationResult,
    segment_output,
)
from devolearn_web.result_cache import HeldResult, StackFacts, get_result_cache
from devolearn_web.stack_pipeline import frame_json, stack_json

# Fields that change what the network sees: with `result` they would be silently ignored.
NETWORK_FIELDS = (
    "diameter",
    "pixel_size_um",
    "channel",
    "axes",
    "frame",
    "assemble",
    "track",
    "z_step_um",
    "projection",
)
MAX_EXCLUDED_POINTS = 2000


def parse_min_area(raw: str | None) -> float:
    """The `min_area` field: objects smaller than this many upload pixels are dropped (0: none)."""
    if raw is None or not raw.strip():
        return 0.0
    try:
        value = float(raw)
    except ValueError as error:
        raise BadParameter(
            f"min_area must be a number of pixels (0 or more); '{raw[:40]}' is not a number."
        ) from error
    if not math.isfinite(value) or value < 0:
        raise BadParameter(f"min_area must be a number of pixels, 0 or more; {raw[:40]} is not.")
    return value


def parse_exclude(raw: str | None, frames: int | None) -> dict[int, list[tuple[float, float]]]:
    """The `exclude` field: points "x,y" (or "x,y,frame" in a stack), separated by ";", each
    dropping the object under it; by frame index."""
    points: dict[int, list[tuple[float, float]]] = {}
    parts = [part.strip() for part in (raw or "").split(";") if part.strip()]
    if len(parts) > MAX_EXCLUDED_POINTS:
        raise BadParameter(f"exclude holds {len(parts)} points; up to {MAX_EXCLUDED_POINTS} here.")
    for part in parts:
        numbers = part.split(",")
        try:
            values = [float(number) for number in numbers]
        except ValueError:
            values = []
        if len(values) not in (2, 3) or not all(map(math.isfinite, values)):
            raise BadParameter(
                f"exclude takes points 'x,y' (upload pixels; 'x,y,frame' in a stack) separated "
                f"by ';'; '{part[:40]}' is not one."
            )
        frame = int(values[2]) if len(values) == 3 else 0
        if len(values) == 2 and frames is not None:
            raise BadParameter(
                f"This is a stack: give each excluded point its frame, as 'x,y,frame'; "
                f"'{part[:40]}' has none."
            )
        if values[2:] and (values[2] != frame or not 0 <= frame < (frames or 1)):
            raise BadParameter(f"exclude: '{part[:40]}' names a frame that does not exist.")
        points.setdefault(frame, []).append((values[0], values[1]))
    return points


def object_filters(form: MultiDict, frames: int | None) -> dict[int, ObjectFilter]:
    """One ObjectFilter per frame index (a missing index: only the minimum size applies)."""
    min_area = parse_min_area(form.get("min_area"))
    points = parse_exclude(form.get("exclude"), frames)
    filters = {index: ObjectFilter(min_area, tuple(spots)) for index, spots in points.items()}
    filters[-1] = ObjectFilter(min_area)
    return filters


def filter_for(filters: dict[int, ObjectFilter], index: int) -> ObjectFilter:
    return filters.get(index, filters[-1])


def filtered(
    result: SegmentationResult | LineageResult, object_filter: ObjectFilter
) -> SegmentationResult | LineageResult:
    """The result without the objects the filter drops (made again from its network output)."""
    if not isinstance(result, SegmentationResult) or object_filter == ObjectFilter():
        return result
    return segment_output(result.network, result.threshold, object_filter)


def hold(
    name: str,
    task: str,
    stem: str,
    results: list[SegmentationResult | LineageResult],
    stack: StackFacts | None = None,
) -> dict:
    """Hold the results' network output; the answer's `result_id` and `result_held_s` fields
    ({} when the cache is off or full: the page then sends the file again, as before)."""
    cache = get_result_cache()
    if cache is None or not results:
        return {}
    held = HeldResult(name, task, stem, stack=stack)
    for result in results:
        held.threshold = getattr(result, "threshold", None)
        if isinstance(result, LineageResult):
            held.lineage.append(result)
        elif result.network is not None:
            held.outputs.append(result.network)
        else:
            return {}
    key = cache.put(held)
    return {} if key is None else {"result_id": key, "result_held_s": round(cache.seconds)}


def answer_held(key: str, threshold: float | None, form: MultiDict, requested: str) -> Response:
    """A held result's JSON answer or download at a new threshold and filter."""
    for field in NETWORK_FIELDS:
        if (form.get(field) or "").strip():
            raise BadParameter(
                f"'{field}' changes what the network sees, so it cannot be applied to a held "
                "result: send the file again with it, without 'result'."
            )
    cache = get_result_cache()
    if cache is None:
        raise BadParameter("This server holds no results (RESULT_CACHE_MB=0): send the file.")
    held = cache.get(key)
    facts = held.stack
    frames = facts.count if facts is not None else 1
    filters = object_filters(form, facts.count if facts is not None else None)
    if threshold is None:
        threshold = held.threshold
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
        return file_response(
            *build_download(requested, held.stem, results, positions, axis, calibration)
        )
    include_figures = "figures" in {word.strip() for word in form.get("include", "").split(",")}
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


def file_response(body: bytes, media_type: str, filename: str) -> Response:
    response = Response(body, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
