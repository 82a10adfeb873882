"""The predict request's options, parsed and checked once (from the form, or the CLI's arguments).

Every sentence a bad option gets is made here; what depends on the upload (a frame index, an
excluded point's frame) is checked against it once it is decoded, with the same sentences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from devolearn_web.catalogue import NUCLEI_MODELS
from devolearn_web.errors import BadParameter
from devolearn_web.pipelines import ObjectFilter, check_threshold
from devolearn_web.scale import AUTOMATIC_SCALE, ScaleRequest, parse_scale_request
from devolearn_web.stack_assembly import AssemblyRequest, parse_assembly_request
from devolearn_web.stacks import parse_axes_override, parse_channel

FORMATS = (
    "json",
    "csv",
    "tiff",
    "probability-tiff",
    "png",
    "roi",
    "zip",
    "ctc",
    "tracks-csv",
    "founder-counts-csv",
)
# Downloads made from tracks: they need track=true (predict's and a job's alike).
TRACK_FORMATS = ("ctc", "tracks-csv", "founder-counts-csv")
PROJECTIONS = ("max", "none")
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


@dataclass(frozen=True)
class PredictOptions:
    """What a predict request asks for, beside its file (or held result)."""

    threshold: float | None = None  # None: the model card's default
    format: str = "json"
    figures: bool = False  # include=figures
    axes: str | None = None
    channel: int | None = None
    frame: int | None = None  # one frame analysed alone; its range is checked on the upload
    projection: str | None = None  # None: the model's default
    streamed: bool = False  # progress=ndjson
    scale: ScaleRequest = AUTOMATIC_SCALE
    assembly: AssemblyRequest = field(default_factory=AssemblyRequest)
    min_area: float = 0.0
    exclude: tuple[ExcludedPoint, ...] = ()  # their frames are checked on the upload
    result: str = ""  # a held result's id instead of a file

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_threshold(self.threshold, f"{self.threshold:g}")

    @classmethod
    def from_form(cls, form) -> PredictOptions:
        """The options of a multipart form; BadParameter naming the first bad field."""
        threshold = parse_threshold(form.get("threshold"))
        result = (form.get("result") or "").strip()
        requested = parse_format(form.get("format"))
        if result:
            for name in NETWORK_FIELDS:
                if (form.get(name) or "").strip():
                    raise BadParameter(
                        f"'{name}' changes what the network sees, so it cannot be applied to a "
                        "held result: send the file again with it, without 'result'."
                    )
        assembly = parse_assembly_request(form)
        if requested in TRACK_FORMATS and not assembly.track:
            raise BadParameter(
                f"format={requested} is a download of tracks: send track=true with it (and a "
                f"time series on the {' or '.join(NUCLEI_MODELS)} model)."
            )
        return cls(
            threshold=threshold,
            format=requested,
            figures="figures" in parse_include(form.get("include")),
            axes=parse_axes_override(form.get("axes")),
            channel=parse_channel(form.get("channel")),
            frame=parse_frame(form.get("frame")),
            projection=parse_projection(form.get("projection")),
            streamed=(form.get("progress") or "").strip().lower() == "ndjson",
            scale=parse_scale_request(form),
            assembly=assembly,
            min_area=parse_min_area(form.get("min_area")),
            exclude=parse_exclude(form.get("exclude")),
            result=result,
        )

    def filters(self, frames: int | None) -> dict[int, ObjectFilter]:
        """One ObjectFilter per frame index (-1: the minimum size alone, for any other frame);
        `frames`: the stack's frame count, None for a single image."""
        points = points_by_frame(self.exclude, frames)
        filters = {
            index: ObjectFilter(self.min_area, tuple(spots)) for index, spots in points.items()
        }
        filters[-1] = ObjectFilter(self.min_area)
        return filters

    def frame_of(self, count: int) -> int | None:
        """The frame asked for, checked against the upload's frame count."""
        if self.frame is not None and not 0 <= self.frame < count:
            raise BadParameter(
                f"Frame {self.frame} does not exist: there are {count} (0 to {count - 1})."
            )
        return self.frame


def filter_for(filters: dict[int, ObjectFilter], index: int) -> ObjectFilter:
    """Frame `index`'s filter from PredictOptions.filters."""
    return filters.get(index, filters[-1])


def parse_threshold(raw: str | None) -> float | None:
    """The threshold form field as a float in 0..1, None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as error:
        raise BadParameter(
            f"The threshold must be a number from 0 to 1; '{raw[:40]}' is not a number."
        ) from error
    return check_threshold(value, raw[:40])


def parse_include(raw: str | None) -> set[str]:
    """The comma-separated `include` field as a set of words (only "figures" means anything)."""
    return {word.strip() for word in (raw or "").split(",") if word.strip()}


def parse_format(raw: str | None) -> str:
    """The `format` field: json (default), csv, tiff, probability-tiff, png, roi, zip, ctc,
    tracks-csv or founder-counts-csv."""
    value = (raw or "json").strip().lower()
    if value not in FORMATS:
        raise BadParameter(
            f"The format '{value[:20]}' is not known; choose one of: {', '.join(FORMATS)}."
        )
    return value


def parse_frame(raw: str | None) -> int | None:
    """The `frame` field (0-based index of one frame to analyse alone), or None."""
    if raw is None or not raw.strip():
        return None
    try:
        frame = int(raw)
    except ValueError as error:
        raise BadParameter(f"The frame must be a whole number; not '{raw[:20]}'.") from error
    if frame < 0:
        raise BadParameter(f"Frame {frame} does not exist: frames are counted from 0.")
    return frame


def parse_projection(raw: str | None) -> str | None:
    """The `projection` field: "max" (brightest value through z per time point), "none"
    (every z-slice alone), or None when absent (the model's default)."""
    value = (raw or "").strip().lower()
    if not value:
        return None
    if value not in PROJECTIONS:
        raise BadParameter(
            f"projection must be one of: {', '.join(PROJECTIONS)}; '{value[:20]}' is not."
        )
    return value


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


@dataclass(frozen=True)
class ExcludedPoint:
    """One point of the `exclude` field, upload pixels; `frame` as written (None: not given)."""

    x: float
    y: float
    frame: float | None
    text: str  # as sent, for the sentence that refuses it


def parse_exclude(raw: str | None) -> tuple[ExcludedPoint, ...]:
    """The `exclude` field: points "x,y" (or "x,y,frame" in a stack), separated by ";", each
    dropping the object under it."""
    parts = [part.strip() for part in (raw or "").split(";") if part.strip()]
    if len(parts) > MAX_EXCLUDED_POINTS:
        raise BadParameter(f"exclude holds {len(parts)} points; up to {MAX_EXCLUDED_POINTS} here.")
    points = []
    for part in parts:
        try:
            values = [float(number) for number in part.split(",")]
        except ValueError:
            values = []
        if len(values) not in (2, 3) or not all(map(math.isfinite, values)):
            raise BadParameter(
                f"exclude takes points 'x,y' (upload pixels; 'x,y,frame' in a stack) separated "
                f"by ';'; '{part[:40]}' is not one."
            )
        frame = values[2] if len(values) == 3 else None
        points.append(ExcludedPoint(values[0], values[1], frame, part[:40]))
    return tuple(points)


def points_by_frame(
    points: tuple[ExcludedPoint, ...], frames: int | None
) -> dict[int, list[tuple[float, float]]]:
    """The excluded points by frame index, checked against the upload's frames (None: a single
    image)."""
    by_frame: dict[int, list[tuple[float, float]]] = {}
    for point in points:
        if point.frame is None and frames is not None:
            raise BadParameter(
                f"This is a stack: give each excluded point its frame, as 'x,y,frame'; "
                f"'{point.text}' has none."
            )
        frame = 0 if point.frame is None else int(point.frame)
        if point.frame is not None and (point.frame != frame or not 0 <= frame < (frames or 1)):
            raise BadParameter(f"exclude: '{point.text}' names a frame that does not exist.")
        by_frame.setdefault(frame, []).append((point.x, point.y))
    return by_frame
