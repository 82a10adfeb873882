"""3D nuclei and tracks for a stack: the request's options checked, the engine run over the
stack's per-slice results, and what the answer adds (no Flask: a queued job can call it too).

- `assemble=3d` (nucleus model, a stack with a z axis): each time point's slices are linked into
  3D nuclei (devolearn_web.assembly3d); every slice's labels and objects then carry the 3D label,
  so the page colours a nucleus the same in every slice and the labels TIFF is a 3D label image.
- `track=true` (nucleus model, a stack with a time axis): nuclei are followed through time with
  divisions (devolearn_web.tracking); labels then carry track ids (CTC's res_track.txt meaning).
  A time series of z-stacks is assembled in 3D first, whatever `assemble` says.
- With tracks, the founder cells are named when the recording starts at 4 cells or fewer
  (devolearn_web.founders): each track's `name`, null when unknown, and a note saying why.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from devolearn_web.assembly3d import DEFAULT_Z_STEP_UM, assemble_3d, objects_3d
from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.calibration import UNITS, Calibration
from devolearn_web.catalogue import CATALOGUE, NUCLEI_MODELS
from devolearn_web.errors import BadParameter
from devolearn_web.founder_counts import founder_counts_for
from devolearn_web.founders import Naming, name_founders
from devolearn_web.pipelines import SegmentationResult
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import AUTOMATIC_SCALE, ScaleRequest
from devolearn_web.stack_pipeline import (
    BATCH_SIZE,
    MAX_FRAMES_WITH_IMAGES,
    TIMING_STAGES,
    FrameFigures,
    frame_json,
    predict_stack,
    stack_json,
)
from devolearn_web.stacks import FrameStack
from devolearn_web.tracking import (
    Tracking,
    centres_and_diameters,
    nuclei_per_time,
    track_nuclei,
)

Z_STEP_RANGE_UM = (0.01, 100.0)
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("", "false", "0", "no", "off")


@dataclass(frozen=True)
class AssemblyRequest:
    """What the request asks for: 3D nuclei, tracks, and the z step (um) if it gives one."""

    assemble_3d: bool = False
    track: bool = False
    z_step_um: float | None = None

    @property
    def wanted(self) -> bool:
        return self.assemble_3d or self.track


@dataclass
class StackAssembly:
    """Per time point the label image (ZxHxW, or HxW for a time series of single planes) with
    3D labels or track ids, the voxel size in um when known, and the tracking if asked."""

    volumes: list[np.ndarray]
    z_step_um: float
    voxel_um: tuple[float, float, float] | None
    tracking: Tracking | None
    notes: list[str]
    has_z: bool
    naming: Naming | None = None

    @property
    def names(self) -> dict[int, str]:
        """Founder names by track id (empty without tracks or names)."""
        return self.naming.names if self.naming is not None else {}


def parse_assembly_request(form) -> AssemblyRequest:
    """The `assemble`, `track` and `z_step_um` form fields."""
    assemble = (form.get("assemble") or "").strip().lower()
    if assemble not in ("", "2d", "3d"):
        raise BadParameter(
            f"assemble must be 3d (link each nucleus through the z-slices) or 2d (each slice on "
            f"its own, the default); not '{assemble[:20]}'."
        )
    track = (form.get("track") or "").strip().lower()
    if track not in TRUE_WORDS + FALSE_WORDS:
        raise BadParameter(f"track must be true or false; not '{track[:20]}'.")
    z_step = None
    raw = (form.get("z_step_um") or "").strip()
    if raw:
        try:
            z_step = float(raw)
        except ValueError:
            z_step = math.nan
        if not Z_STEP_RANGE_UM[0] <= z_step <= Z_STEP_RANGE_UM[1]:  # also refuses NaN
            raise BadParameter(
                "z_step_um is the distance between two z-slices in micrometres: a number from "
                f"{Z_STEP_RANGE_UM[0]:g} to {Z_STEP_RANGE_UM[1]:g}; '{raw[:20]}' is not."
            )
    request = AssemblyRequest(assemble == "3d", track in TRUE_WORDS, z_step)
    if z_step is not None and not request.wanted:
        raise BadParameter(
            "z_step_um is used only to link nuclei through z: send it with assemble=3d "
            "(or track=true for z-stacks over time)."
        )
    return request


def check_assembly_request(request: AssemblyRequest, model: str, stack: FrameStack | None) -> None:
    """BadParameter, in words, when 3D nuclei or tracks cannot be made from this upload."""
    if not request.wanted:
        return
    asked = "3D nuclei (assemble=3d)" if request.assemble_3d else "tracks (track=true)"
    if model not in CATALOGUE or not CATALOGUE[model].assembles_nuclei:
        raise BadParameter(
            f"{asked} are made from nuclei: run "
            + " or ".join(f"the {name} model (/api/v1/predict/{name})" for name in NUCLEI_MODELS)
            + f", not the {model} model."
        )
    if stack is None:
        what = (
            "a z-stack (a multi-page TIFF, one page per z-slice)"
            if request.assemble_3d
            else "a time series (a TIFF with a time axis, or a movie)"
        )
        raise BadParameter(f"{asked} need {what}; this upload is a single 2D image.")
    slider = stack.axes.get("slider") or []
    if request.assemble_3d and "z" not in slider:
        raise BadParameter(
            "assemble=3d links nuclei through z-slices, but this upload's frames are time "
            "points, with no z axis. If its pages are z-slices, send axes=Z (or TZ)."
        )
    if request.track and "time" not in slider:
        raise BadParameter(
            "track=true follows nuclei through time, but this upload's pages are read as "
            "z-slices of one time point. If they are time points, send axes=T (or TZ for "
            "z-stacks over time)."
        )


def z_step_for(request: AssemblyRequest, calibration: Calibration | None) -> tuple[float, str]:
    """The z step in um: the request's, the file's, or Fluo-N3DH-CE's 1 um; and a note."""
    if request.z_step_um is not None:
        return request.z_step_um, f"z step {request.z_step_um:g} um, as given (z_step_um)."
    if calibration is not None and calibration.z_spacing:
        step = calibration.z_spacing * UNITS[calibration.unit][1] / 1e-6
        return step, f"z step {step:g} um, read from the TIFF."
    return DEFAULT_Z_STEP_UM, (
        f"The file states no z step: {DEFAULT_Z_STEP_UM:g} um assumed (as in Fluo-N3DH-CE); "
        "send z_step_um to set it. It bounds how far apart two sections of one nucleus may be."
    )


def pixel_size_um(calibration: Calibration | None) -> tuple[float, float] | None:
    """(height, width) of a pixel in um, when the file states them."""
    if calibration is None:
        return None
    metres = UNITS[calibration.unit][1]
    return calibration.pixel_height * metres / 1e-6, calibration.pixel_width * metres / 1e-6


def time_groups(positions: Sequence[dict]) -> list[list[int]]:
    """Frame indices per time point, in order (one group when there is no time axis)."""
    groups: dict[int, list[int]] = {}
    for index, position in enumerate(positions):
        groups.setdefault(position.get("time", 0), []).append(index)
    return [groups[moment] for moment in sorted(groups)]


def assemble_stack(
    results: list[SegmentationResult], stack: FrameStack, request: AssemblyRequest
) -> StackAssembly:
    """Run 3D assembly and tracking over a stack's per-frame results; relabels them in place."""
    z_step, note = z_step_for(request, stack.calibration)
    has_z = "z" in (stack.axes.get("slider") or [])
    pixel = pixel_size_um(stack.calibration)
    voxel = (z_step, *pixel) if pixel is not None else None
    notes = [note] if has_z else []
    volumes, lookups = [], []
    for group in time_groups(stack.positions):
        planes = [results[index].labels for index in group]
        if has_z:
            assembly = assemble_3d(planes, z_step)
            volumes.append(assembly.labels)
            lookups.append(assembly.lookups)
        else:
            volumes.append(planes[0].astype(np.uint32))
            lookups.append((np.arange(int(planes[0].max(initial=0)) + 1, dtype=np.uint32),))
    tracking = naming = None
    if request.track:
        # z in the units of y and x: a z step is this many pixels deep.
        depth = z_step / pixel[0] if pixel is not None else _depth_from_shapes(volumes)
        spacing = (depth, 1.0, 1.0) if has_z else (1.0, 1.0)
        tracking = track_nuclei(volumes, spacing)
        volumes = [tracking.relabel(moment, volume) for moment, volume in enumerate(volumes)]
        naming = name_founders(tracking.tracks, [_centres(volume, spacing) for volume in volumes])
        notes.append(naming.note)
        lookups = [
            tuple(tracking.lookups[moment][lookup] for lookup in per_slice)
            for moment, per_slice in enumerate(lookups)
        ]
    for group, per_slice in zip(time_groups(stack.positions), lookups, strict=True):
        for index, lookup in zip(group, per_slice, strict=True):
            _relabel(results[index], lookup)
    return StackAssembly(volumes, z_step, voxel, tracking, notes, has_z, naming)


def _centres(volume: np.ndarray, spacing: Sequence[float]) -> dict[int, np.ndarray]:
    """Track id -> centre (in the tracker's units) at one time point."""
    ids, centres, _ = centres_and_diameters(volume, spacing)
    return {int(label): centre for label, centre in zip(ids, centres, strict=True)}


def _depth_from_shapes(volumes: list[np.ndarray]) -> float:
    """Pixels per slice when the file gives no pixel size: a nucleus is as deep as it is wide."""
    ratios = []
    for volume in volumes:
        if volume.ndim != 3:
            continue
        for found in objects_3d(volume)[:200]:
            mask = volume == found["label"]
            slices = int(mask.any(axis=(1, 2)).sum())
            width = 2.0 * math.sqrt(mask.sum(axis=(1, 2)).max() / math.pi)
            ratios.append(width / slices)
    return float(np.median(ratios)) if ratios else 1.0


def _relabel(result: SegmentationResult, lookup: np.ndarray) -> None:
    """A frame's labels and objects renamed through `lookup` (old label -> new)."""
    labels = lookup[result.labels]
    # uint16 when it fits, as collect_results keeps them (a long stack's labels held at half size).
    result.labels = labels.astype(np.uint16) if labels.max(initial=0) <= 65535 else labels
    result.objects = [
        dataclasses.replace(found, label=int(lookup[found.label])) for found in result.objects
    ]


def assembly_json(assembly: StackAssembly) -> dict:
    """The answer's additions: count_3d and objects_3d (and per time), tracks."""
    answer: dict = {}
    if assembly.has_z:
        answer["z_step_um"] = assembly.z_step_um
        per_time = [objects_3d(volume, assembly.voxel_um) for volume in assembly.volumes]
        if len(per_time) == 1:
            answer.update(count_3d=len(per_time[0]), objects_3d=per_time[0])
        else:
            answer["count_3d_per_time"] = [len(found) for found in per_time]
            answer["objects_3d"] = [
                {"time": moment, **found}
                for moment, objects in enumerate(per_time)
                for found in objects
            ]
    if assembly.tracking is not None:
        tracks = assembly.tracking.tracks
        names = assembly.names
        answer["tracks"] = [{**track.to_dict(), "name": names.get(track.track)} for track in tracks]
        answer["nuclei_per_time"] = nuclei_per_time(tracks, len(assembly.volumes))
        answer["divisions"] = sum(1 for track in tracks if track.parent) // 2
    return answer


def assembled_events(
    registry: ModelRegistry,
    name: str,
    stack: FrameStack,
    request: AssemblyRequest,
    threshold: float | None = None,
    figures: FrameFigures | None = None,
    decode_ms: float = 0.0,
    deadline: Deadline = NO_DEADLINE,
    batch_seconds: float | None = None,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
    batch_size: int = BATCH_SIZE,
    max_frames_with_images: int = MAX_FRAMES_WITH_IMAGES,
    figures_3d: Callable[[dict], dict] | None = None,
) -> Iterator[dict]:
    """Like stack_pipeline.answer_events, with 3D nuclei and tracks: progress after each batch,
    then {"result": <the stack's JSON with count_3d, objects_3d, tracks...>}.

    `figures_3d` draws the assembly's figures from its JSON fields (figures_tracks)."""
    with_images = stack.count <= max_frames_with_images
    started = time.perf_counter()
    results: list[SegmentationResult] = []
    batches = predict_stack(
        registry,
        name,
        stack,
        threshold,
        deadline,
        batch_seconds,
        batch_size=batch_size,
        scale_request=scale_request,
    )
    for index, result in batches:
        results.append(result)
        if (index + 1) % batch_size == 0 or index + 1 == stack.count:
            yield {"progress": {"done": index + 1, "total": stack.count}}
    assembled_at = time.perf_counter()
    assembly = assemble_stack(results, stack, request)
    assembly_ms = (time.perf_counter() - assembled_at) * 1000
    frames = []
    totals = dict.fromkeys(TIMING_STAGES, 0.0)
    totals["decode"] = decode_ms
    for index, result in enumerate(results):
        frame = frame_json(result, index, stack.positions[index], with_images)
        if figures is not None and with_images:
            frame.update(figures(result, stack.image(index, keep_calibration=True)))
        frames.append(frame)
        for stage in TIMING_STAGES[1:]:
            totals[stage] += result.timings_ms.get(stage, 0.0)
    totals["assembly"] = assembly_ms
    totals["total"] = decode_ms + (time.perf_counter() - started) * 1000
    answer = stack_json(name, stack, frames, totals, with_images, max_frames_with_images)
    extra = assembly_json(assembly)
    answer["notes"] += [note for note in assembly.notes if note]
    if assembly.tracking is not None:
        tracks, times = assembly.tracking.tracks, len(assembly.volumes)
        rows, notes = founder_counts_for(registry, stack, tracks, assembly.naming, times, deadline)
        extra["founder_counts"] = rows
        answer["notes"] += notes
    if figures_3d is not None:
        extra["figures_3d"] = figures_3d(extra)
    answer.update(extra)
    yield {"result": answer}
