"""The predict endpoint's answers for stacks, movies and downloads (called by views.api).

Downloads are made from the request itself: the client sends the file again with `format=...`
(the page still holds it in memory), the server decodes it, runs the model and writes the CSV,
TIFF, PNG, ROI set or ZIP into memory and sends it back. Nothing is stored between requests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from flask import Response, current_app, jsonify, stream_with_context
from werkzeug.datastructures import MultiDict

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.ctc import ctc_zip, tracks_csv
from devolearn_web.downloads import build_download, check_format, safe_stem
from devolearn_web.errors import (
    UNEXPECTED_ERROR_SENTENCE,
    BadParameter,
    DevoLearnError,
    TooLarge,
)
from devolearn_web.figures import build_figures
from devolearn_web.figures_tracks import assembly_figures
from devolearn_web.imaging import DecodedImage
from devolearn_web.pipelines import LineageResult, SegmentationResult, predict, predict_bytes
from devolearn_web.registry import ModelRegistry
from devolearn_web.result_cache import StackFacts
from devolearn_web.scale import parse_scale_request
from devolearn_web.stack_assembly import (
    AssemblyRequest,
    assemble_stack,
    assembled_events,
    check_assembly_request,
    parse_assembly_request,
)
from devolearn_web.stack_pipeline import (
    Result,
    answer_events,
    collect_results,
    frame_axis,
    has_frames,
    load_frames,
    max_projection,
    parse_projection,
)
from devolearn_web.stacks import (
    FrameStack,
    parse_axes_override,
    parse_channel,
)
from devolearn_web.views.held import filter_for, filtered, hold, object_filters

logger = logging.getLogger(__name__)

FORMATS = ("json", "csv", "tiff", "probability-tiff", "png", "roi", "zip", "ctc", "tracks-csv")
# Downloads made from tracks: they need track=true.
TRACK_FORMATS = ("ctc", "tracks-csv")
NDJSON = "application/x-ndjson"


def _stack_limits() -> dict:
    """The app's STACK_BATCH_SIZE and MAX_FRAMES_WITH_IMAGES, as answer_events' arguments."""
    config = current_app.config
    return {
        "batch_size": max(1, int(config["STACK_BATCH_SIZE"])),
        "max_frames_with_images": int(config["MAX_FRAMES_WITH_IMAGES"]),
    }


def needs_frames_or_file(data: bytes, form: MultiDict) -> bool:
    """True when the upload is a stack or movie, or the request asks for a file, not JSON."""
    requested = parse_format(form.get("format"))
    if has_frames(data) or parse_assembly_request(form).wanted:
        return True
    # A single image is one frame: its frame, axes and channel fields are checked as a stack's
    # are, so a typo or frame=3 is a 400, not ignored while the whole image is analysed.
    parse_axes_override(form.get("axes"))
    parse_channel(form.get("channel"))
    parse_frame(form.get("frame"), 1)
    parse_projection(form.get("projection"))
    return requested != "json"


def parse_format(raw: str | None) -> str:
    """The `format` field: json (default), csv, tiff, probability-tiff, png, roi, zip, ctc or
    tracks-csv."""
    value = (raw or "json").strip().lower()
    if value not in FORMATS:
        raise BadParameter(
            f"The format '{value[:20]}' is not known; choose one of: {', '.join(FORMATS)}."
        )
    return value


def parse_frame(raw: str | None, count: int) -> int | None:
    """The `frame` field (0-based index of one frame to analyse alone), or None."""
    if raw is None or not raw.strip():
        return None
    try:
        frame = int(raw)
    except ValueError as error:
        raise BadParameter(f"The frame must be a whole number; not '{raw[:20]}'.") from error
    if not 0 <= frame < count:
        raise BadParameter(f"Frame {frame} does not exist: there are {count} (0 to {count - 1}).")
    return frame


def answer_frames_or_file(
    registry: ModelRegistry,
    name: str,
    data: bytes,
    filename: str | None,
    threshold: float | None,
    form: MultiDict,
    deadline: Deadline = NO_DEADLINE,
) -> Response:
    """JSON (or NDJSON with progress) for a stack or movie; a file for any `format` but json."""
    requested = parse_format(form.get("format"))
    scale_request = parse_scale_request(form)
    task = registry.card(name)["task"]
    include_figures = "figures" in {word.strip() for word in form.get("include", "").split(",")}
    stem = safe_stem(filename, name)
    max_pixels = current_app.config["MAX_IMAGE_PIXELS"]
    assembly_request = parse_assembly_request(form)
    if requested in TRACK_FORMATS and not assembly_request.track:
        raise BadParameter(
            f"format={requested} is a download of tracks: send track=true with it (and a time "
            "series on the nucleus model)."
        )
    if not has_frames(data):
        check_assembly_request(assembly_request, name, None)
        check_format(requested, task, 1)
        result, image = predict_bytes(
            registry,
            name,
            data,
            filename,
            threshold,
            max_pixels,
            deadline=deadline,
            channel=parse_channel(form.get("channel")),
            scale_request=scale_request,
        )
        result = filtered(result, filter_for(object_filters(form, None), 0))
        return _file_response(
            *build_download(requested, stem, [result], [{}], calibration=image.calibration)
        )

    started = time.perf_counter()
    stack = load_frames(
        data,
        axes=parse_axes_override(form.get("axes")),
        channel=parse_channel(form.get("channel")),
        max_pixels=max_pixels,
        max_voxels=current_app.config["MAX_STACK_VOXELS"],
        max_frames=current_app.config["MAX_STACK_FRAMES"],
    )
    stack = _projected(stack, task, parse_projection(form.get("projection")))
    decode_ms = (time.perf_counter() - started) * 1000
    filters = object_filters(form, stack.count)
    frame = parse_frame(form.get("frame"), stack.count)
    check_assembly_request(assembly_request, name, stack)
    if frame is not None and assembly_request.wanted:
        raise BadParameter(
            "frame analyses one frame alone, but 3D nuclei and tracks need every frame: "
            "leave frame out, or assemble and track off."
        )
    if assembly_request.wanted:
        return _assembled(
            registry, name, stack, assembly_request, threshold, form, deadline, decode_ms, stem
        )
    if frame is not None:
        image = stack.image(frame, keep_calibration=True)
        result = predict(registry, name, image, threshold, decode_ms, deadline, scale_request)
        result = filtered(result, filter_for(filters, frame))
        return _one_frame(result, image, stack, frame, requested, stem, include_figures)
    if requested != "json":
        check_format(requested, task, stack.count)
        _check_download_size(requested, stack.count * stack.width * stack.height)
        results = collect_results(registry, name, stack, threshold, deadline, scale_request)
        results = [filtered(result, filter_for(filters, i)) for i, result in enumerate(results)]
        body = build_download(
            requested, stem, results, stack.positions, frame_axis(stack), stack.calibration
        )
        return _file_response(*body)

    def adjust(index: int, result: Result) -> Result:
        return filtered(result, filter_for(filters, index))

    def finish(results: list[Result]) -> dict:
        return hold(name, task, stem, results, stack_facts(stack))

    held = {"adjust": adjust, "finish": finish}
    if (form.get("progress") or "").strip().lower() == "ndjson":
        # Bytes flow after every batch, so a router's first-byte limit cannot cut a long movie:
        # the time budget then bounds each batch, not the whole stack.
        events = answer_events(
            registry,
            name,
            stack,
            threshold,
            build_figures if include_figures else None,
            decode_ms,
            NO_DEADLINE,
            batch_seconds=deadline.seconds,
            scale_request=scale_request,
            **held,
            **_stack_limits(),
        )
        return Response(stream_with_context(_ndjson(events)), mimetype=NDJSON)
    events = answer_events(
        registry,
        name,
        stack,
        threshold,
        build_figures if include_figures else None,
        decode_ms,
        deadline,
        scale_request=scale_request,
        **held,
        **_stack_limits(),
    )
    answer = None
    for event in events:
        answer = event.get("result", answer)
    return jsonify(answer)


def _projected(stack: FrameStack, task: str, projection: str | None) -> FrameStack:
    """The stack as the model should see it: a lineage z-stack projected per time point unless
    projection=none (its training images were whole-embryo projections)."""
    has_z = "z" in (stack.axes.get("slider") or ())
    if projection == "max" and (task != "lineage" or not has_z):
        raise BadParameter(
            "projection=max projects the z-slices of a z-stack for the lineage model; "
            + ("this model analyses every slice." if task != "lineage" else "this file has no z.")
        )
    if task == "lineage" and has_z and projection != "none":
        return max_projection(stack)
    return stack


def stack_facts(stack: FrameStack) -> StackFacts:
    """What a held stack result keeps of the stack: no pixels."""
    return StackFacts(
        kind=stack.kind,
        axes=dict(stack.axes),
        width=stack.width,
        height=stack.height,
        count=stack.count,
        positions=tuple(stack.positions),
        notes=tuple(stack.notes),
        calibration=stack.calibration,
        frame_axis=frame_axis(stack),
    )


def _assembled(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    request: AssemblyRequest,
    threshold: float | None,
    form: MultiDict,
    deadline: Deadline,
    decode_ms: float,
    stem: str,
) -> Response:
    """A stack with 3D nuclei and/or tracks: JSON (NDJSON with progress), or a file."""
    requested = parse_format(form.get("format"))
    scale_request = parse_scale_request(form)
    if requested != "json":
        if requested not in TRACK_FORMATS:
            check_format(requested, "segmentation", stack.count)
        _check_download_size(requested, stack.count * stack.width * stack.height)
        results = collect_results(registry, name, stack, threshold, deadline, scale_request)
        assembly = assemble_stack(results, stack, request)
        if requested == "ctc":
            tracks = assembly.tracking.tracks if assembly.tracking else []
            return _file_response(
                ctc_zip(assembly.volumes, tracks, assembly.names),
                "application/zip",
                f"{stem}_ctc.zip",
            )
        if requested == "tracks-csv":
            tracks = assembly.tracking.tracks if assembly.tracking else []
            body = tracks_csv(assembly.volumes, tracks, assembly.voxel_um, assembly.names)
            body = body.encode("utf-8")
            return _file_response(body, "text/csv", f"{stem}_tracks.csv")
        body = build_download(
            requested, stem, results, stack.positions, frame_axis(stack), stack.calibration
        )
        return _file_response(*body)
    include_figures = "figures" in {word.strip() for word in form.get("include", "").split(",")}
    streamed = (form.get("progress") or "").strip().lower() == "ndjson"
    events = assembled_events(
        registry,
        name,
        stack,
        request,
        threshold,
        build_figures if include_figures else None,
        decode_ms,
        NO_DEADLINE if streamed else deadline,
        batch_seconds=deadline.seconds if streamed else None,
        scale_request=scale_request,
        **_stack_limits(),
        figures_3d=assembly_figures if include_figures else None,
    )
    if streamed:
        return Response(stream_with_context(_ndjson(events)), mimetype=NDJSON)
    answer = None
    for event in events:
        answer = event.get("result", answer)
    return jsonify(answer)


def _one_frame(
    result: SegmentationResult | LineageResult,
    image: DecodedImage,
    stack: FrameStack,
    frame: int,
    requested: str,
    stem: str,
    include_figures: bool,
) -> Response:
    """One frame of a stack, answered as a single image (JSON with its position, or a file)."""
    if requested != "json":
        task = "lineage" if isinstance(result, LineageResult) else "segmentation"
        check_format(requested, task, 1)
        one_frame_stem = f"{stem}_frame{frame}"
        return _file_response(
            *build_download(
                requested, one_frame_stem, [result], [{}], calibration=image.calibration
            )
        )
    answer = result.to_json()
    answer.update(index=frame, position=dict(stack.positions[frame]), axes=dict(stack.axes))
    if include_figures:
        answer.update(build_figures(result, image))
    return jsonify(answer)


def _check_download_size(requested: str, voxels: int) -> None:
    # TIFF, PNG and ZIP downloads hold every frame's maps at once; CSVs and JSON do not.
    limit = current_app.config["MAX_DOWNLOAD_VOXELS"]
    if requested != "csv" and voxels > limit:
        raise TooLarge(
            f"This stack has {voxels / 1e6:.0f} million pixels in all: image downloads are made "
            f"for up to {limit / 1e6:g} million here. Ask for format=csv, or use the command "
            "line (flask devolearn predict), which has no such limit."
        )


def _ndjson(events: Iterator[dict]) -> Iterator[str]:
    """One JSON object per line; an error after the first line is sent as a line too."""
    try:
        for event in events:
            yield json.dumps(event, separators=(",", ":")) + "\n"
    except DevoLearnError as error:
        yield json.dumps({"error": error.message, "status": error.status}) + "\n"
    except Exception:
        # The 200 and the first lines are already sent: no error handler can answer any more,
        # so a bug ends the stream with the handler's own sentence instead of a cut connection.
        logger.exception("Unexpected error while streaming a stack's answer")
        yield json.dumps({"error": UNEXPECTED_ERROR_SENTENCE, "status": 500}) + "\n"


def _file_response(body: bytes, media_type: str, filename: str) -> Response:
    response = Response(body, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
