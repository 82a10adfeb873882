"""One upload through a model: the file parsed once, the options parsed once, image or stack
decided once. The API, the pages' held answers and the CLI call it; views only make responses.

A TIFF is parsed once (pixels, pixel size, frame count and the admission probe read the same
`TiffFile`), and a single image is a one-frame stack of kind "image" whose answer keeps the
single-image shape.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tifffile

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.ctc import ctc_zip, tracks_csv
from devolearn_web.downloads import build_download, check_format, safe_stem
from devolearn_web.errors import BadParameter, TooLarge
from devolearn_web.figures import build_figures
from devolearn_web.figures_tracks import assembly_figures
from devolearn_web.founder_counts import founder_counts_csv, founder_counts_for
from devolearn_web.imaging import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from devolearn_web.memory_estimate import UploadShape, probe_upload
from devolearn_web.movies import sniff_movie
from devolearn_web.options import TRACK_FORMATS, PredictOptions, filter_for
from devolearn_web.pipelines import (
    LineageResult,
    ObjectFilter,
    SegmentationResult,
    predict,
    segment_output,
)
from devolearn_web.registry import ModelRegistry
from devolearn_web.result_cache import HeldResult, StackFacts, get_result_cache
from devolearn_web.stack_assembly import assemble_stack, assembled_events, check_assembly_request
from devolearn_web.stack_pipeline import (
    BATCH_SIZE,
    MAX_FRAMES_WITH_IMAGES,
    Result,
    answer_events,
    collect_results,
    frame_axis,
    load_frames,
    max_projection,
)
from devolearn_web.stacks import (
    DEFAULT_MAX_STACK_FRAMES,
    DEFAULT_MAX_STACK_VOXELS,
    TIFF_ERRORS,
    FrameStack,
    is_tiff,
    tiff_frame_count,
)

SINGLE_IMAGE_AXES = {"guessed": "YX", "used": "YX", "frames": 1, "slider": []}


@dataclass(frozen=True)
class Limits:
    """The sizes one answer may reach (the app's config; the CLI's defaults have no download
    limit)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_voxels: int = DEFAULT_MAX_STACK_VOXELS
    max_frames: int = DEFAULT_MAX_STACK_FRAMES
    max_download_voxels: int | None = None
    batch_size: int = BATCH_SIZE
    max_frames_with_images: int = MAX_FRAMES_WITH_IMAGES

    @classmethod
    def of(cls, config) -> Limits:
        """The limits an app's config sets."""
        return cls(
            max_pixels=config["MAX_IMAGE_PIXELS"],
            max_voxels=config["MAX_STACK_VOXELS"],
            max_frames=config["MAX_STACK_FRAMES"],
            max_download_voxels=config["MAX_DOWNLOAD_VOXELS"],
            batch_size=max(1, int(config["STACK_BATCH_SIZE"])),
            max_frames_with_images=int(config["MAX_FRAMES_WITH_IMAGES"]),
        )

    def stack_batches(self) -> dict:
        """answer_events' batch arguments."""
        return {
            "batch_size": self.batch_size,
            "max_frames_with_images": self.max_frames_with_images,
        }


@dataclass(frozen=True)
class Decoded:
    """An upload's frames: a single image is a one-frame stack of kind "image", kept as decoded
    (its notes and pixel size) in `image`."""

    stack: FrameStack
    image: DecodedImage | None
    decode_ms: float

    @property
    def single(self) -> bool:
        return self.image is not None

    def frame_image(self, index: int) -> DecodedImage:
        """Frame `index` as a single image, with the upload's pixel size."""
        if self.image is not None:
            return self.image
        return self.stack.image(index, keep_calibration=True)


class Upload:
    """The bytes of one upload, parsed once: a movie is sniffed, a TIFF opened (and closed by
    `close`, or at the end of a `with` block)."""

    def __init__(self, data: bytes, filename: str | None = None) -> None:
        self.data = data
        self.filename = filename
        self.movie = sniff_movie(data)
        self.tiff: tifffile.TiffFile | None = None
        self.frames = 1
        if self.movie is None and is_tiff(data):
            try:
                self.tiff = tifffile.TiffFile(io.BytesIO(data))
            except TIFF_ERRORS:
                pass  # the single-image decoder says what is wrong with the file
            else:
                self.frames = max(1, tiff_frame_count(data, self.tiff))

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.tiff is not None:
            self.tiff.close()
            self.tiff = None

    @property
    def is_stack(self) -> bool:
        """A movie, an animated GIF or a TIFF of more than one frame."""
        return self.movie is not None or self.frames > 1

    def shape(self, max_voxels: int) -> UploadShape | None:
        """The size its headers give (memory_estimate.probe_upload), for admission."""
        return probe_upload(self.data, max_voxels, self.tiff)

    def decode(self, options: PredictOptions, limits: Limits, task: str) -> Decoded:
        """Its frames as the model should see them (a lineage z-stack projected unless
        projection=none)."""
        started = time.perf_counter()
        if not self.is_stack:
            image = decode_image(
                self.data, self.filename, limits.max_pixels, options.channel, tiff=self.tiff
            )
            stack = FrameStack(
                kind="image",
                data=image.pixels[None],
                positions=({},),
                axes=dict(SINGLE_IMAGE_AXES),
                notes=image.notes,
                mode=image.mode,
                calibration=image.calibration,
            )
            return Decoded(stack, image, (time.perf_counter() - started) * 1000)
        stack = load_frames(
            self.data,
            options.axes,
            options.channel,
            limits.max_pixels,
            limits.max_voxels,
            limits.max_frames,
            parsed=self.tiff,
        )
        stack = _projected(stack, task, options.projection)
        return Decoded(stack, None, (time.perf_counter() - started) * 1000)


@dataclass
class Answer:
    """What a view sends: JSON, NDJSON lines (`events`), or a file (body, media type, name)."""

    json: dict | None = None
    events: Iterator[dict] | None = None
    file: tuple[bytes, str, str] | None = None


def analyse(
    registry: ModelRegistry,
    name: str,
    task: str,
    upload: Upload,
    options: PredictOptions,
    limits: Limits,
    deadline: Deadline = NO_DEADLINE,
) -> Answer:
    """The predict endpoint's answer for an upload: JSON for an image, JSON or NDJSON for a
    stack or movie, a file for any `format` but json."""
    if not upload.is_stack:
        check_assembly_request(options.assembly, name, None)
        options.frame_of(1)  # frame=3 of a single image is a 400, as it is of a stack
        if options.format != "json":
            check_format(options.format, task, 1)
    decoded = upload.decode(options, limits, task)
    stem = safe_stem(upload.filename, name)
    if decoded.single:
        return _single(registry, name, task, decoded, options, stem, deadline)
    stack = decoded.stack
    filters = options.filters(stack.count)
    frame = options.frame_of(stack.count)
    check_assembly_request(options.assembly, name, stack)
    if frame is not None and options.assembly.wanted:
        raise BadParameter(
            "frame analyses one frame alone, but 3D nuclei and tracks need every frame: "
            "leave frame out, or assemble and track off."
        )
    if options.assembly.wanted:
        return _assembled(registry, name, decoded, options, limits, deadline, stem)
    if frame is not None:
        return _one_frame(registry, name, decoded, frame, filters, options, deadline, stem)
    if options.format != "json":
        check_format(options.format, task, stack.count)
        check_download_size(options.format, stack.count * stack.width * stack.height, limits)
        results = stack_results(registry, name, decoded, options, deadline, filters)
        return Answer(file=_download(options.format, stem, results, stack))

    def adjust(index: int, result: Result) -> Result:
        return filtered(result, filter_for(filters, index))

    def finish(results: list[Result]) -> dict:
        return hold(name, task, stem, results, stack_facts(stack))

    streamed = options.streamed
    events = answer_events(
        registry,
        name,
        stack,
        options.threshold,
        build_figures if options.figures else None,
        decoded.decode_ms,
        # Streamed, bytes flow after every batch, so a router's first-byte limit cannot cut a
        # long movie: the time budget then bounds each batch, not the whole stack.
        NO_DEADLINE if streamed else deadline,
        batch_seconds=deadline.seconds if streamed else None,
        scale_request=options.scale,
        adjust=adjust,
        finish=finish,
        **limits.stack_batches(),
    )
    return Answer(events=events) if streamed else Answer(json=_last_result(events))


def stack_results(
    registry: ModelRegistry,
    name: str,
    decoded: Decoded,
    options: PredictOptions,
    deadline: Deadline = NO_DEADLINE,
    filters: dict[int, ObjectFilter] | None = None,
) -> list[Result]:
    """Every frame's result (a single image's one), the options' objects dropped."""
    if filters is None:
        filters = options.filters(None if decoded.single else decoded.stack.count)
    if decoded.single:
        result = predict(
            registry,
            name,
            decoded.image,
            options.threshold,
            decoded.decode_ms,
            deadline,
            options.scale,
        )
        return [filtered(result, filter_for(filters, 0))]
    results = collect_results(
        registry, name, decoded.stack, options.threshold, deadline, options.scale
    )
    return [filtered(result, filter_for(filters, i)) for i, result in enumerate(results)]


def _single(
    registry: ModelRegistry,
    name: str,
    task: str,
    decoded: Decoded,
    options: PredictOptions,
    stem: str,
    deadline: Deadline,
) -> Answer:
    """A single image: its JSON answer (held for the slider), or a download."""
    (result,) = stack_results(registry, name, decoded, options, deadline)
    if options.format != "json":
        return Answer(file=_download(options.format, stem, [result], decoded.stack))
    answer = result.to_json()
    if options.figures:
        answer.update(build_figures(result, decoded.image))
    answer.update(hold(name, task, stem, [result]))
    return Answer(json=answer)


def _one_frame(
    registry: ModelRegistry,
    name: str,
    decoded: Decoded,
    frame: int,
    filters: dict[int, ObjectFilter],
    options: PredictOptions,
    deadline: Deadline,
    stem: str,
) -> Answer:
    """One frame of a stack, answered as a single image (JSON with its position, or a file)."""
    stack = decoded.stack
    result, image = frame_result(registry, name, decoded, frame, filters, options, deadline)
    if options.format != "json":
        task = "lineage" if isinstance(result, LineageResult) else "segmentation"
        check_format(options.format, task, 1)
        body = build_download(
            options.format, f"{stem}_frame{frame}", [result], [{}], calibration=image.calibration
        )
        return Answer(file=body)
    answer = result.to_json()
    answer.update(index=frame, position=dict(stack.positions[frame]), axes=dict(stack.axes))
    if options.figures:
        answer.update(build_figures(result, image))
    return Answer(json=answer)


def frame_result(
    registry: ModelRegistry,
    name: str,
    decoded: Decoded,
    frame: int,
    filters: dict[int, ObjectFilter],
    options: PredictOptions,
    deadline: Deadline = NO_DEADLINE,
) -> tuple[Result, DecodedImage]:
    """One frame of a stack through the model as a single image: its result and its image."""
    image = decoded.frame_image(frame)
    result = predict(
        registry, name, image, options.threshold, decoded.decode_ms, deadline, options.scale
    )
    return filtered(result, filter_for(filters, frame)), image


def analyse_image(
    registry: ModelRegistry,
    name: str,
    data: bytes,
    filename: str | None = None,
    options: PredictOptions | None = None,
    limits: Limits | None = None,
    deadline: Deadline = NO_DEADLINE,
) -> tuple[Result, DecodedImage]:
    """One image through a model on the API's path, for scripts, benchmarks and tests: the
    result and the decoded image. A stack or movie gives its frame `options.frame` (the first
    when unset), as `frame=` does on the API."""
    options = options or PredictOptions()
    limits = limits or Limits()
    task = registry.card(name).task  # an unknown or uninstalled model fails before decoding
    with Upload(data, filename) as upload:
        decoded = upload.decode(options, limits, task)
    if decoded.single:
        (result,) = stack_results(registry, name, decoded, options, deadline)
        return result, decoded.image
    frame = options.frame_of(decoded.stack.count) or 0
    filters = options.filters(decoded.stack.count)
    return frame_result(registry, name, decoded, frame, filters, options, deadline)


def predict_file(name: str, path: Path, models_dir: Path) -> dict:
    """Run a model on an image file and return the API's JSON answer for it (for scripts)."""
    registry = _registry_for(Path(models_dir).resolve())
    result, _ = analyse_image(registry, name, Path(path).read_bytes(), Path(path).name)
    return result.to_json()


@functools.lru_cache(maxsize=8)
def _registry_for(models_dir: Path) -> ModelRegistry:
    # Scripts call predict_file in loops: one registry per folder keeps the sessions loaded.
    return ModelRegistry(models_dir)


def _assembled(
    registry: ModelRegistry,
    name: str,
    decoded: Decoded,
    options: PredictOptions,
    limits: Limits,
    deadline: Deadline,
    stem: str,
) -> Answer:
    """A stack with 3D nuclei and/or tracks: JSON (NDJSON with progress), or a file."""
    stack = decoded.stack
    requested = options.format
    if requested != "json":
        if requested not in TRACK_FORMATS:
            check_format(requested, "segmentation", stack.count)
        check_download_size(requested, stack.count * stack.width * stack.height, limits)
        results = collect_results(registry, name, stack, options.threshold, deadline, options.scale)
        assembly = assemble_stack(results, stack, options.assembly)
        tracks = assembly.tracking.tracks if assembly.tracking else []
        if requested == "ctc":
            body = ctc_zip(assembly.volumes, tracks, assembly.names)
            return Answer(file=(body, "application/zip", f"{stem}_ctc.zip"))
        if requested == "tracks-csv":
            text = tracks_csv(assembly.volumes, tracks, assembly.voxel_um, assembly.names)
            return Answer(file=(text.encode("utf-8"), "text/csv", f"{stem}_tracks.csv"))
        if requested == "founder-counts-csv":
            times = len(assembly.volumes)
            rows, _ = founder_counts_for(registry, stack, tracks, assembly.naming, times, deadline)
            text = founder_counts_csv(rows)
            return Answer(file=(text.encode("utf-8"), "text/csv", f"{stem}_founder_counts.csv"))
        return Answer(file=_download(requested, stem, results, stack))
    streamed = options.streamed
    events = assembled_events(
        registry,
        name,
        stack,
        options.assembly,
        options.threshold,
        build_figures if options.figures else None,
        decoded.decode_ms,
        NO_DEADLINE if streamed else deadline,
        batch_seconds=deadline.seconds if streamed else None,
        scale_request=options.scale,
        **limits.stack_batches(),
        figures_3d=assembly_figures if options.figures else None,
    )
    return Answer(events=events) if streamed else Answer(json=_last_result(events))


def _download(requested: str, stem: str, results: list[Result], stack: FrameStack) -> tuple:
    if stack.kind == "image":
        return build_download(requested, stem, results, [{}], calibration=stack.calibration)
    return build_download(
        requested, stem, results, stack.positions, frame_axis(stack), stack.calibration
    )


def _last_result(events: Iterator[dict]) -> dict | None:
    answer = None
    for event in events:
        answer = event.get("result", answer)
    return answer


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


def check_download_size(requested: str, voxels: int, limits: Limits) -> None:
    """TooLarge for an image download of more voxels than the limit (CSVs are not held whole)."""
    limit = limits.max_download_voxels
    if limit is not None and requested != "csv" and voxels > limit:
        raise TooLarge(
            f"This stack has {voxels / 1e6:.0f} million pixels in all: image downloads are made "
            f"for up to {limit / 1e6:g} million here. Ask for format=csv, or use the command "
            "line (flask devolearn predict), which has no such limit."
        )


def filtered(result: Result, object_filter: ObjectFilter) -> Result:
    """The result without the objects the filter drops (made again from its network output)."""
    if not isinstance(result, SegmentationResult) or object_filter == ObjectFilter():
        return result
    return segment_output(result.network, result.threshold, object_filter)


def hold(
    name: str,
    task: str,
    stem: str,
    results: list[Result],
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
