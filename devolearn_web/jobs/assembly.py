"""3D nuclei and tracks for a job (`assemble=3d`, `track=true`, `z_step_um`), as predict makes them.

- At submission: the fields are checked with predict's parsers and sentences, and the upload's
  axes are read from its headers, so a job that cannot be assembled is a 400 before it is queued.
- In prepare: the same check on the decoded stack (what the headers could not tell).
- In the assembly step (jobs.work): stack_assembly.assemble_stack, the function predict runs,
  over every chunk's per-slice results; this module keeps what the downloads need of it (the
  tracks, founder names, voxel size) and rebuilds the per-time-point label volumes from the
  relabelled slices for `format=ctc` and `format=tracks-csv` (devolearn_web.ctc, as predict).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from devolearn_web.ctc import ctc_zip, tracks_csv
from devolearn_web.errors import BadParameter, TooLarge
from devolearn_web.options import TRACK_FORMATS
from devolearn_web.pipelines import SegmentationResult
from devolearn_web.stack_assembly import (
    AssemblyRequest,
    StackAssembly,
    check_assembly_request,
    time_groups,
)
from devolearn_web.stacks import FrameStack
from devolearn_web.tracking import Track

# The assembly step's record of tracks, names and voxel size (for the track downloads).
SUMMARY = "assembly.pickle"


@dataclass(frozen=True)
class AssemblySummary:
    """What the track downloads need beside the relabelled slices: no pixels."""

    tracks: tuple[Track, ...]
    names: dict[int, str]
    voxel_um: tuple[float, float, float] | None
    has_z: bool


def job_assembly_fields(request: AssemblyRequest, model: str, frame: int | None) -> dict | None:
    """The job's assembly fields as a record value (None when neither is asked for); a 400 in
    predict's words for a model without nuclei, or one frame alone (bad values, and a track
    download without track=true, are refused by options.PredictOptions.from_form)."""
    if not request.wanted:
        return None
    # The model is checked now; the axes once the upload's headers are read (check_upload).
    check_assembly_request(request, model, _described(["time", "z"]))
    if frame is not None:
        raise BadParameter(
            "frame analyses one frame alone, but 3D nuclei and tracks need every frame: "
            "leave frame out, or assemble and track off."
        )
    return asdict(request)


def check_track_download(requested: str, options: dict) -> None:
    """BadParameter for a track download of a job that was not sent with track=true."""
    request = request_of(options)
    if requested in TRACK_FORMATS and (request is None or not request.track):
        raise BadParameter(
            f"format={requested} is a download of tracks: this job was not sent with "
            "track=true (send the file again as a job with it)."
        )


def request_of(options: dict) -> AssemblyRequest | None:
    """The job's AssemblyRequest, None when it asked for neither 3D nor tracks."""
    fields = options.get("assembly")
    return AssemblyRequest(**fields) if fields else None


def check_slider(options: dict, model: str, slider: Sequence[str] | None) -> None:
    """BadParameter, in predict's words, when the frames' axes (`slider`: "time", "z"; None for a
    single 2D image) cannot give what the job asks for."""
    request = request_of(options)
    if request is not None:
        check_assembly_request(request, model, None if slider is None else _described(slider))


def check_stack(options: dict, model: str, stack: FrameStack) -> None:
    """As check_slider, on the decoded stack (a single frame is a single 2D image)."""
    check_slider(options, model, (stack.axes.get("slider") or []) if stack.count > 1 else None)


def check_size(options: dict, voxels: int, limit: int) -> None:
    """TooLarge when 3D nuclei or tracks are asked of a stack past JOB_MAX_ASSEMBLY_VOXELS: the
    assembly step would hold more than the worker has (a killed worker, not a sentence)."""
    if request_of(options) is not None and voxels > limit:
        raise TooLarge(
            f"3D nuclei and tracks link the whole stack at once, and this one holds "
            f"{voxels / 1e6:.3g} million values; jobs assemble up to {limit / 1e6:g} million "
            "(JOB_MAX_ASSEMBLY_VOXELS). Send fewer time points, or leave assemble and track off."
        )


def _described(slider: Sequence[str]) -> FrameStack:
    """A stack description with these frame axes and no pixels (what the checks read)."""
    empty = np.zeros((0, 1, 1), np.uint8)
    return FrameStack(kind="stack", data=empty, positions=(), axes={"slider": list(slider)})


def summary_of(assembly: StackAssembly) -> bytes:
    """The assembly's tracks, names and voxel size, pickled for the downloads."""
    tracks = tuple(assembly.tracking.tracks) if assembly.tracking is not None else ()
    summary = AssemblySummary(tracks, dict(assembly.names), assembly.voxel_um, assembly.has_z)
    return pickle.dumps(summary)


def volumes_of(
    results: Sequence[SegmentationResult], positions: Sequence[dict], has_z: bool
) -> list[np.ndarray]:
    """Per time point the label volume (ZxHxW, or HxW without z) from the relabelled slices:
    what assemble_stack's volumes hold."""
    groups = time_groups(positions)
    if has_z:
        return [np.stack([results[index].labels for index in group]) for group in groups]
    return [results[group[0]].labels for group in groups]


def track_download(
    requested: str,
    stem: str,
    results: Sequence[SegmentationResult],
    positions: Sequence[dict],
    summary_blob: bytes,
) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of format=ctc or format=tracks-csv, as predict makes them."""
    summary = pickle.loads(summary_blob)  # written by summary_of in the job's assembly step
    volumes = volumes_of(results, positions, summary.has_z)
    if requested == "ctc":
        body = ctc_zip(volumes, list(summary.tracks), summary.names)
        return body, "application/zip", f"{stem}_ctc.zip"
    text = tracks_csv(volumes, list(summary.tracks), summary.voxel_um, summary.names)
    return text.encode("utf-8"), "text/csv", f"{stem}_tracks.csv"
