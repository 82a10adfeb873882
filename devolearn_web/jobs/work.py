"""A job's three steps, each a function of a store: prepare (decode, cut into chunks of frames),
one chunk (run the model on its frames), assemble (the stack's JSON answer, as predict gives;
with `assemble=3d` or `track=true`, 3D nuclei and tracks made by predict's own functions over every
chunk's slices, jobs.assembly).

Memory: prepare reads a TIFF (or a ZIP's time points) a page at a time from the stored file and
holds one chunk of frames (movies and colour TIFFs are still decoded whole); a chunk holds its
own frames and results only;
assemble holds the frames' JSON (no pixels), or for 3D nuclei and tracks every frame's labels
and probability map (the tracker links all time points at once); for tracks' founder counts it
then reads the kept frames a chunk at a time, holding one projection per time point not yet
complete. Downloads are built from the per-chunk results (relabelled ones for 3D nuclei and
tracks).
Every step is idempotent, so RQ may run one again after a worker died in it.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from devolearn_web.downloads import MAX_LABEL_16_BIT, build_download, check_format, safe_stem
from devolearn_web.errors import DevoLearnError, JobNotFound
from devolearn_web.founder_counts import estimates_on, founder_counts_csv, founder_counts_with
from devolearn_web.imaging import DecodedImage
from devolearn_web.jobs import assembly as job_assembly
from devolearn_web.jobs.settings import JobSettings
from devolearn_web.jobs.store import ENDED, JobStore
from devolearn_web.paged_stacks import (
    PagedStack,
    check_zip_options,
    is_zip,
    one_frame,
    open_tiff,
    open_zip,
)
from devolearn_web.pipelines import SegmentationResult
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import ScaleRequest
from devolearn_web.stack_assembly import AssemblyRequest, assemble_stack, assembly_json
from devolearn_web.stack_pipeline import (
    TIMING_STAGES,
    frame_axis,
    frame_json,
    has_frames,
    load_frames,
    predict_stack,
    reference_frames,
    reference_image,
    stack_json,
)
from devolearn_web.stacks import FrameStack, is_tiff

logger = logging.getLogger(__name__)
INPUT = "input"
STACK = "stack"  # the decoded stack's description (axes, positions, scaling), no pixels
# The whole stack's reference picture, so every chunk runs on the grid the whole stack would.
REFERENCE = "reference"
RESULT = "result.json"


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.npy"


def chunk_result_name(index: int) -> str:
    return f"result-{index:05d}.pickle"


def assembled_result_name(index: int) -> str:
    """A chunk's results relabelled with 3D labels or track ids (jobs with assembly)."""
    return f"assembled-{index:05d}.pickle"


def chunk_sizes(total: int, chunk_frames: int) -> list[int]:
    """Frames in each chunk: all `chunk_frames` long but the last."""
    return [min(chunk_frames, total - start) for start in range(0, total, chunk_frames)]


def frames_done(done: set[int], total: int, chunk_frames: int) -> int:
    """Frames finished, from the set of finished chunk indices."""
    sizes = chunk_sizes(total, chunk_frames)
    return sum(sizes[index] for index in done if index < len(sizes))


def is_live(store: JobStore, job_id: str) -> bool:
    """False once the job was cancelled, failed or deleted: its steps then do nothing."""
    record = store.get(job_id)
    return record is not None and record["state"] not in ENDED


def prepare(store: JobStore, job_id: str, settings: JobSettings) -> int:
    """Decode the input and store it as chunks of frames; the number of chunks."""
    record = store.get(job_id)
    if record is None or record["state"] in ENDED:
        return 0
    options = record["options"]
    with store.blob_file(job_id, INPUT) as path:
        if path is None:
            raise DevoLearnError("The job's upload is no longer stored: send it again.")
        paged = _open_paged(path, options, settings)
        if paged is None:  # a movie, one image, colour pages: small enough to decode whole
            stack = _decode(path.read_bytes(), options, settings)
            paged = PagedStack(stack, list(range(stack.count)), _InMemoryPages(stack.data))
        try:
            frame = options.get("frame")
            if frame is not None:
                paged = one_frame(paged, frame)
            job_assembly.check_stack(options, record["model"], paged.stack)
            voxels = paged.stack.count * paged.stack.height * paged.stack.width
            job_assembly.check_size(options, voxels, settings.max_assembly_voxels)
            count = _write_chunks(store, job_id, paged, settings.chunk_frames)
        finally:
            paged.close()
    stack = paged.stack
    live = store.update_live(
        job_id,
        state="running",
        total=stack.count,
        voxels=stack.count * stack.height * stack.width,
        chunk_frames=settings.chunk_frames,
    )
    if not live:  # cancelled while its chunks were written: they go too, none are run
        store.delete_blobs(job_id)
        return 0
    return count


def _open_paged(path: Path, options: dict, settings: JobSettings) -> PagedStack | None:
    """A TIFF or a ZIP of time points, read a frame at a time; None for what is decoded whole."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if is_zip(head):
        check_zip_options(options.get("axes"), options.get("channel"))
        return open_zip(path, settings.max_stack_voxels, settings.max_frames)
    if not is_tiff(head):
        return None
    paged = open_tiff(
        path,
        options.get("axes"),
        options.get("channel"),
        settings.max_stack_voxels,
        settings.max_frames,
    )
    if paged is not None and paged.stack.count == 1:
        paged.close()  # one frame is one image: the single-image decoder's answer, as predict's
        return None
    return paged


def _write_chunks(store: JobStore, job_id: str, paged: PagedStack, chunk_frames: int) -> int:
    """Every chunk's frames stored, one chunk in memory at a time; the stack's description too."""
    stack = paged.stack
    description = replace(stack, data=np.empty((0, stack.height, stack.width), stack.data.dtype))
    store.put_blob(job_id, STACK, pickle.dumps((description, stack.count)))
    indices = reference_frames(stack)
    frames = np.stack([paged.frames(index, index + 1)[0] for index in indices])
    part = replace(stack, data=frames, positions=tuple(stack.positions[i] for i in indices))
    buffer = io.BytesIO()
    np.save(buffer, reference_image(part, list(range(len(indices)))).pixels)
    store.put_blob(job_id, REFERENCE, buffer.getvalue())
    sizes = chunk_sizes(stack.count, chunk_frames)
    for index, start in enumerate(range(0, stack.count, chunk_frames)):
        if index % 16 == 15 and not is_live(store, job_id):
            break  # cancelled: prepare() deletes what was written
        buffer = io.BytesIO()
        np.save(buffer, paged.frames(start, start + sizes[index]))
        store.put_blob(job_id, chunk_name(index), buffer.getvalue())
        del buffer
    return len(sizes)


class _InMemoryPages:
    """Frames of a stack decoded whole (movies, colour TIFFs), read as PagedStack reads pages."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def page(self, index: int) -> np.ndarray:
        return self.data[index]

    def close(self) -> None:
        self.data = None


def _decode(data: bytes, options: dict, settings: JobSettings) -> FrameStack:
    """The upload as a FrameStack: a single image is a stack of one frame."""
    if has_frames(data):
        return load_frames(
            data,
            axes=options.get("axes"),
            channel=options.get("channel"),
            max_pixels=settings.max_pixels,
            max_voxels=settings.max_stack_voxels,
            max_frames=settings.max_frames,
        )
    from devolearn_web.imaging import decode_image

    image = decode_image(data, max_pixels=settings.max_pixels, channel=options.get("channel"))
    pixels = np.asarray(image.pixels, dtype=np.float32)[np.newaxis]
    return FrameStack(
        kind="stack",
        data=pixels,
        positions=({},),
        axes={"guessed": "YX", "used": "YX", "frames": 1, "slider": []},
        notes=tuple(image.notes),
        mode="F",
        calibration=image.calibration,
    )


def _description(store: JobStore, job_id: str) -> tuple[FrameStack, int]:
    blob = store.get_blob(job_id, STACK)
    if blob is None:
        raise JobNotFound("The job's frames are no longer stored (it was cancelled or expired).")
    return pickle.loads(blob)  # written by prepare() above, never by a visitor


def _reference(
    store: JobStore, job_id: str, description: FrameStack, total: int
) -> DecodedImage | None:
    """The whole stack's reference picture (None for a single frame: it is its own)."""
    blob = store.get_blob(job_id, REFERENCE)
    if blob is None or total < 2:
        return None
    pixels = np.load(io.BytesIO(blob), allow_pickle=False)
    calibration = description.calibration
    calibration = None if calibration is None else calibration.without_z()
    return DecodedImage(
        pixels, description.width, description.height, description.mode, (), calibration
    )


def run_chunk(
    store: JobStore, job_id: str, index: int, registry: ModelRegistry, settings: JobSettings
) -> None:
    """Run the model on chunk `index`: its frames' JSON and results stored, the chunk counted."""
    if not is_live(store, job_id) or index in store.chunks_done(job_id):
        return  # cancelled, or already done by a worker that died after finishing it
    record = store.get(job_id)
    options = record["options"]
    description, total = _description(store, job_id)
    frames = _stored_frames(store, job_id, index)
    start = index * record["chunk_frames"]
    positions = description.positions[start : start + len(frames)]
    chunk = replace(description, data=frames, positions=positions)
    with_images = total <= settings.max_frames_with_images
    scale_request = ScaleRequest(**options.get("scale", {}))
    reference = _reference(store, job_id, description, total)
    # With 3D nuclei or tracks a frame's figures show its final labels: the assembly step draws
    # them, from this chunk's frames, kept until then; it also runs the lineage model on each
    # time point of a tracked recording (founder counts), so those frames are kept as well.
    request = job_assembly.request_of(options)
    assembling = request is not None
    keep_frames = assembling and ((options.get("figures") and with_images) or request.track)
    answers, results = [], []
    # One batch per chunk: the chunk is already the unit of memory and of time.
    for offset, result in predict_stack(
        registry,
        record["model"],
        chunk,
        options.get("threshold"),
        batch_size=len(frames),
        scale_request=scale_request,
        reference=reference,
    ):
        answer = frame_json(result, start + offset, positions[offset], with_images)
        if options.get("figures") and with_images and not assembling:
            from devolearn_web.figures import build_figures  # Plotly dicts only when asked

            answer.update(build_figures(result, chunk.image(offset, keep_calibration=True)))
        answers.append(answer)
        if isinstance(result, SegmentationResult):
            result.labels = _compact(np.asarray(result.labels))  # made now, so it is pickled
        results.append(result)
    store.put_blob(job_id, chunk_result_name(index), pickle.dumps((answers, results)))
    store.mark_chunk_done(job_id, index)
    if not keep_frames:
        store.delete_blob(job_id, chunk_name(index))  # its frames are no longer needed
    done = frames_done(store.chunks_done(job_id), total, record["chunk_frames"])
    store.update(job_id, done=done)
    if not is_live(store, job_id):
        store.delete_blobs(job_id)  # cancelled while this chunk ran


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels as uint16 when they fit (as stack_pipeline.collect_results keeps them): half the
    memory and storage of every chunk, and of the whole stack in the assembly step."""
    if labels.max(initial=0) <= MAX_LABEL_16_BIT:
        return labels.astype(np.uint16)
    return labels


def chunk_results(
    store: JobStore, job_id: str, count: int, name=chunk_result_name
) -> tuple[list[dict], list]:
    """Every frame's JSON and result, in order, from the chunks' stored results."""
    answers, results = [], []
    for index in range(count):
        blob = store.get_blob(job_id, name(index))
        if blob is None:
            raise JobNotFound("This job's results have expired or were deleted.")
        chunk_answers, chunk_results_ = pickle.loads(blob)
        answers.extend(chunk_answers)
        results.extend(chunk_results_)
    return answers, results


def assemble(store: JobStore, job_id: str, settings: JobSettings, registry: ModelRegistry) -> None:
    """The stack's JSON from every chunk, stored; the input deleted; results set to expire."""
    record = store.get(job_id)
    if record is None or record["state"] in ENDED:
        return
    description, total = _description(store, job_id)
    count = len(chunk_sizes(total, record["chunk_frames"]))
    request = job_assembly.request_of(record["options"])
    timings = dict.fromkeys(TIMING_STAGES, 0.0)
    extra: dict = {}
    if request is None:
        answers, _ = chunk_results(store, job_id, count)
    else:
        assembled_at = time.perf_counter()
        answers, extra = _assemble_nuclei(
            store, job_id, record, request, total, count, settings, registry
        )
        timings["assembly"] = (time.perf_counter() - assembled_at) * 1000
    for answer in answers:
        for stage in TIMING_STAGES[1:]:
            timings[stage] += answer.get("timings_ms", {}).get(stage, 0.0)
    timings["total"] = (time.time() - record["created_at"]) * 1000
    with_images = total <= settings.max_frames_with_images
    answer = stack_json(
        record["model"],
        _with_shape(description, total),
        answers,
        timings,
        with_images,
        settings.max_frames_with_images,
    )
    answer["notes"] += extra.pop("notes", [])
    answer.update(extra)
    store.put_blob(job_id, RESULT, _json_bytes(answer))
    for name in (INPUT, REFERENCE, *(chunk_name(index) for index in range(count))):
        store.delete_blob(job_id, name)  # the upload (and pictures of it) not kept past its job
    ended = time.time()
    if store.update_live(
        job_id,
        state="finished",
        done=total,
        finished_at=ended,
        expires_at=ended + settings.result_ttl_s,
    ):
        store.expire(job_id, settings.result_ttl_s)
    if request is not None:
        for index in range(count):  # the relabelled copies are the results now
            store.delete_blob(job_id, chunk_result_name(index))


def _assemble_nuclei(
    store: JobStore,
    job_id: str,
    record: dict,
    request: AssemblyRequest,
    total: int,
    count: int,
    settings: JobSettings,
    registry: ModelRegistry,
) -> tuple[list[dict], dict]:
    """3D nuclei and tracks over every chunk's slices, by predict's own assemble_stack: the
    frames' JSON with their final labels, and what the answer adds (count_3d, objects_3d,
    tracks, founder_counts, notes, figures_3d). The relabelled results are stored beside the
    originals, which go only once the job is finished, so a retried step starts from them."""
    description, _ = _description(store, job_id)
    stack = _with_shape(description, total)
    _, results = chunk_results(store, job_id, count)
    assembly = assemble_stack(results, stack, request)  # relabels `results` in place
    with_images = total <= settings.max_frames_with_images
    figures = bool(record["options"].get("figures"))
    answers = [
        frame_json(result, index, description.positions[index], with_images)
        for index, result in enumerate(results)
    ]
    chunk_frames = record["chunk_frames"]
    for index in range(count):
        part = slice(index * chunk_frames, (index + 1) * chunk_frames)
        if figures and with_images:
            _frame_figures(store, job_id, index, description, answers[part], results[part])
        blob = pickle.dumps((answers[part], results[part]))
        store.put_blob(job_id, assembled_result_name(index), blob)
    store.put_blob(job_id, job_assembly.SUMMARY, job_assembly.summary_of(assembly))
    extra = assembly_json(assembly)
    extra["notes"] = [note for note in assembly.notes if note]
    if assembly.tracking is not None:
        model = estimates_on(registry, _time_point_images(store, job_id, description, count))
        rows, notes = founder_counts_with(
            *model, assembly.tracking.tracks, assembly.naming, len(assembly.volumes)
        )
        extra["founder_counts"] = rows
        extra["notes"] += notes
    if figures:
        from devolearn_web.figures_tracks import assembly_figures  # Plotly dicts only when asked

        extra["figures_3d"] = assembly_figures(extra)
    return answers, extra


def _time_point_images(
    store: JobStore, job_id: str, description: FrameStack, count: int
) -> Iterator[DecodedImage]:
    """Each time point's picture for the lineage model, as predict's founder counts see it (the
    brightest value through its z-slices), read a chunk of frames at a time; a time point is
    given as soon as its last slice is read."""
    times = [position.get("time") for position in description.positions]
    left = Counter(times)
    order = {time_point: number for number, time_point in enumerate(dict.fromkeys(times))}
    open_projections: dict[object, np.ndarray] = {}
    finished: dict[int, DecodedImage] = {}
    next_number, start = 0, 0
    calibration = description.calibration
    one = replace(
        description,
        positions=({},),
        calibration=None if calibration is None else calibration.without_z(),
    )
    for index in range(count):
        frames = _stored_frames(store, job_id, index)
        for frame, time_point in zip(frames, times[start : start + len(frames)], strict=True):
            held = open_projections.get(time_point)
            open_projections[time_point] = frame.copy() if held is None else np.maximum(held, frame)
            left[time_point] -= 1
            if left[time_point] == 0:
                projection = open_projections.pop(time_point)
                finished[order[time_point]] = replace(one, data=projection[None]).image(0)
            while next_number in finished:  # in the order predict's projection has them
                yield finished.pop(next_number)
                next_number += 1
        start += len(frames)


def _frame_figures(
    store: JobStore,
    job_id: str,
    index: int,
    description: FrameStack,
    answers: list[dict],
    results: list,
) -> None:
    """Chunk `index`'s frame figures, drawn with their final labels from its kept frames."""
    from devolearn_web.figures import build_figures  # Plotly dicts only when asked

    frames = _stored_frames(store, job_id, index)
    start = answers[0]["index"] if answers else 0
    positions = description.positions[start : start + len(frames)]
    chunk = replace(description, data=frames, positions=positions)
    for offset, (answer, result) in enumerate(zip(answers, results, strict=True)):
        answer.update(build_figures(result, chunk.image(offset, keep_calibration=True)))


def _stored_frames(store: JobStore, job_id: str, index: int) -> np.ndarray:
    """Chunk `index`'s frames as prepare stored them (the file's dtype)."""
    blob = store.get_blob(job_id, chunk_name(index))
    if blob is None:
        raise JobNotFound("The job's frames are no longer stored (it was cancelled or expired).")
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _with_shape(description: FrameStack, total: int) -> FrameStack:
    """The description with a `data` of the stack's shape that holds no memory."""
    shape = (total, description.height, description.width)
    return replace(
        description,
        data=np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=shape, strides=(0, 0, 0)),
    )


def _json_bytes(answer: dict) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode("utf-8")


def fail(store: JobStore, job_id: str, error: BaseException | str, settings: JobSettings) -> None:
    """The job failed: a sentence kept for its status, everything it stored deleted."""
    if isinstance(error, DevoLearnError):
        sentence = error.message
    elif isinstance(error, str):
        sentence = error
    else:
        logger.error("Job %s failed: %r", job_id, error)
        sentence = "The analysis failed on the server; the error has been logged."
    record = store.get(job_id)
    if record is None or record["state"] in ENDED:
        return
    ended = time.time()
    if not store.update_live(
        job_id,
        state="failed",
        error=sentence,
        finished_at=ended,
        expires_at=ended + settings.result_ttl_s,
    ):
        return  # cancelled meanwhile: a cancel stands, and it deleted the files
    store.delete_blobs(job_id)
    store.expire(job_id, settings.result_ttl_s)


def cancel(store: JobStore, job_id: str, settings: JobSettings) -> bool:
    """Mark the job cancelled and delete its input and results; False for an unknown job."""
    if store.get(job_id) is None:
        return False
    ended = time.time()
    store.update(
        job_id, state="cancelled", finished_at=ended, expires_at=ended + settings.result_ttl_s
    )
    store.delete_blobs(job_id)
    store.expire(job_id, settings.result_ttl_s)
    return True


def download(store: JobStore, job_id: str, requested: str, task: str) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of a finished job's download, from its stored results."""
    record = store.get(job_id)
    description, total = _description(store, job_id)
    job_assembly.check_track_download(requested, record["options"])
    if requested not in job_assembly.TRACK_FORMATS:
        check_format(requested, task, total)
    stem = safe_stem(record.get("filename"), record["model"])
    if requested == "founder-counts-csv":  # in the stored answer: no chunk results needed
        answer = store.get_blob(job_id, RESULT)
        if answer is None:
            raise JobNotFound("This job's results have expired or were deleted.")
        text = founder_counts_csv(json.loads(answer)["founder_counts"])
        return text.encode("utf-8"), "text/csv", f"{stem}_founder_counts.csv"
    count = len(chunk_sizes(total, record["chunk_frames"]))
    assembled = job_assembly.request_of(record["options"]) is not None
    name = assembled_result_name if assembled else chunk_result_name
    _, results = chunk_results(store, job_id, count, name)
    if requested in job_assembly.TRACK_FORMATS:
        summary = store.get_blob(job_id, job_assembly.SUMMARY)
        if summary is None:
            raise JobNotFound("This job's results have expired or were deleted.")
        return job_assembly.track_download(requested, stem, results, description.positions, summary)
    return build_download(
        requested,
        stem,
        results,
        description.positions,
        frame_axis(description),
        description.calibration,
    )
