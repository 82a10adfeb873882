"""The three models as pipelines: preprocess (from the model card) -> ONNX Runtime -> postprocess.

Segmentation runs on the working grid (devolearn_web.scale): the upload brought to the object
size and framing the network was trained at, in tiles when large. Objects are found on that grid,
then scaled to the upload's size and clipped to the thresholded upload-size map, so they are
measured in upload pixels with smooth outlines. The lineage network sees the embryo cut out and
laid along x (devolearn_web.embryo), as its training frames showed it, whatever the framing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime
from scipy.special import expit

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.calibration import UNITS, Calibration
from devolearn_web.catalogue import CATALOGUE
from devolearn_web.embryo import EmbryoRegion, EmbryoSearch, embryo_centred_view, find_embryo
from devolearn_web.errors import BadParameter, ModelUnavailable, NoEmbryo
from devolearn_web.imaging import (
    DecodedImage,
    normalise_for_model,
    png_data_url,
    probability_to_png,
    probability_to_uint8,
    resize_image,
    resize_in_bands,
)
from devolearn_web.lineage_counts import lineage_counts
from devolearn_web.model_cards import ModelCard
from devolearn_web.registry import ORT_ERRORS, LoadedModel, ModelRegistry
from devolearn_web.scale import (
    AUTOMATIC_SCALE,
    MIN_WORKING_SIDE,
    GridCard,
    ScaleRequest,
    WorkingGrid,
    contrast_range,
    embryo_window,
    initial_grid,
    median_diameter,
    refined_grid,
    run_tiled,
    to_upload_orientation,
    training_fill,
    with_context_margin,
    working_image,
    working_shape,
)
from devolearn_web.segmentation import (
    MIN_OBJECT_AREA_AT_MODEL_SCALE,
    LabelsOnFirstUse,
    SegmentedObject,
    UploadLabels,
    bright_blobs,
    connected_blobs,
    drop_objects,
    label_at,
    label_instances,
    threshold_probability_map,
    upscale_labels_in_bands,
    whole_round_blobs,
)

# The lineage network ends in a sigmoid and its calibration is flat past the range's end, so an
# embryo older than the training range never reads past the limit: it piles up just under it
# (a simulated embryo of A = 256 read 247). A count this close to the limit may be an older one.
END_OF_RANGE_FRACTION = 0.96


@dataclass
class SegmentationResult:
    """A segmentation at the upload's size: probability uint8 HxW (probability * 255, the
    PNG's and the slider's map), labels uint16 HxW (int32 past 65535 objects; made from
    UploadLabels when first read), objects."""

    model: str
    width: int
    height: int
    threshold: float
    probability: np.ndarray
    labels: np.ndarray = LabelsOnFirstUse()
    objects: list[SegmentedObject]
    notes: tuple[str, ...]
    timings_ms: dict[str, float]
    calibration: Calibration | None = None
    scale: ScaleReport | None = None
    warnings: tuple[str, ...] = ()
    # What the objects were made from: kept for a threshold or download without a new run.
    network: NetworkOutput | None = field(default=None, repr=False, compare=False)

    @property
    def count(self) -> int:
        return len(self.objects)

    def to_json(self, with_probability: bool = True) -> dict:
        """The API's segmentation answer; the probability PNG is encoded only when wanted."""
        answer = {
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "threshold": self.threshold,
            "count": self.count,
            "objects": [obj.to_dict() for obj in self.objects],
        }
        if with_probability:
            answer["probability"] = png_data_url(probability_to_png(self.probability))
        if self.scale is not None:
            answer.update(self.scale.to_json())
        answer.update(
            notes=list(self.notes),
            warnings=list(self.warnings),
            timings_ms=rounded_timings(self.timings_ms),
        )
        if self.calibration is not None:
            answer["calibration"] = self.calibration.to_json()
        return answer


@dataclass
class LineageResult:
    """Cells per founder lineage (keys in the card's order: A, E, M, P, C, D, Z)."""

    model: str
    populations: dict[str, int]
    total: int
    outside_training_range: bool
    at_end_of_training_range: bool
    notes: tuple[str, ...]
    timings_ms: dict[str, float]
    embryo: EmbryoRegion | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The API's lineage answer."""
        return {
            "model": self.model,
            "populations": dict(self.populations),
            "total": self.total,
            "outside_training_range": self.outside_training_range,
            "at_end_of_training_range": self.at_end_of_training_range,
            "embryo": self.embryo.to_json() if self.embryo is not None else None,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "timings_ms": rounded_timings(self.timings_ms),
        }


@dataclass(frozen=True)
class ScaleReport:
    """The working scale a segmentation ran at, where it came from, and the objects' size."""

    scale: float  # working-grid pixels per upload pixel (geometric mean over x and y)
    source: str
    diameter: float | None  # median object diameter found, upload pixels
    embryo: EmbryoRegion | None

    def to_json(self) -> dict:
        return {
            "scale": round(self.scale, 4),
            "scale_source": self.source,
            "diameter": None if self.diameter is None else round(self.diameter, 1),
            "embryo": self.embryo.to_json() if self.embryo is not None else None,
        }

    def note(self) -> str:
        found = (
            "no objects were found to measure"
            if self.diameter is None
            else f"the objects found are {self.diameter:.1f} pixels across (median)"
        )
        return (
            f"The model ran at {self.scale:.3g}x the upload's size (scale from the "
            f"{self.source}); {found}."
        )


def rounded_timings(timings: dict[str, float]) -> dict[str, float]:
    """Stage timings in milliseconds, rounded to 0.01 ms for the answer."""
    return {key: round(value, 2) for key, value in timings.items()}


def build_input_tensor(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    """float32 (1, C, H, W) network input from a float32 HxW image, as the model card says."""
    normalised = normalise_for_model(resize_image(pixels, card.input.size))
    if card.input.normalisation == "symmetric":
        normalised = (normalised - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(np.repeat(normalised[None, None], card.input.channels, axis=1))


def apply_output_activation(output: np.ndarray, card: ModelCard) -> np.ndarray:
    """The network's output as float32, through a sigmoid when the card says the file has none."""
    output = np.asarray(output, dtype=np.float32)
    if card.output.activation == "sigmoid":
        # expit, not 1 / (1 + exp(-x)): a confident logit below -88 would overflow float32.
        output = expit(output)
    return output.astype(np.float32)


def run_model(
    model: LoadedModel, tensor: np.ndarray, deadline: Deadline = NO_DEADLINE
) -> np.ndarray:
    """The model's raw output for one input tensor; ModelUnavailable when the run fails, and
    TookTooLong when the deadline stops it."""
    input_name, output_name = model.card.input.name, model.card.output.name
    deadline.check("starting the model")
    run_options = onnxruntime.RunOptions()
    # A terminated run is expected here, not an error worth ONNX Runtime's own log line.
    run_options.log_severity_level = 4
    try:
        with deadline.alarm(lambda: setattr(run_options, "terminate", True)):
            output = model.session.run([output_name], {input_name: tensor}, run_options)[0]
    except ORT_ERRORS as error:
        if run_options.terminate:
            raise deadline.exceeded("running the model") from error
        raise ModelUnavailable(
            f"The {model.name} model failed to run ({type(error).__name__}); "
            "its file may not match its card."
        ) from error
    if not np.isfinite(output).all():
        # A broken or mis-exported network: its NaNs would become a plausible-looking answer.
        raise ModelUnavailable(
            f"The {model.name} model returned values that are not numbers (NaN or infinite); "
            "its file may be damaged, so no result is given."
        )
    return output


def resolve_threshold(threshold: float | None, card: ModelCard) -> float:
    """The threshold to use: the caller's (checked to be in 0..1) or the card's default."""
    if threshold is None:
        return float(card.output.default_threshold)
    return check_threshold(threshold)


def check_threshold(threshold: float, shown: str | None = None) -> float:
    """The threshold as a float when it is a number in 0..1, else BadParameter (`shown`: the
    value as the caller wrote it, for the sentence)."""
    if not isinstance(threshold, int | float):
        raise BadParameter("The threshold must be a number from 0 to 1.")
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise BadParameter(
            f"The threshold must be between 0 and 1; {shown or f'{threshold:g}'} is not."
        )
    return float(threshold)


def predict(
    registry: ModelRegistry,
    name: str,
    image: DecodedImage,
    threshold: float | None = None,
    decode_ms: float = 0.0,
    deadline: Deadline = NO_DEADLINE,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
    shared_grid: SharedGrid | None = None,
) -> SegmentationResult | LineageResult:
    """Run one model on a decoded image; decode_ms (time spent decoding) goes into the timings.

    The deadline is checked before each stage and stops the model run itself (TookTooLong).
    A stack's frames share one working grid (`shared_grid`), chosen once for the stack."""
    model = registry.get(name)
    clock = _Stopwatch(decode_ms)
    deadline.check("preparing the image for the model")
    if model.card.is_segmentation:
        threshold = resolve_threshold(threshold, model.card)
        image = with_size_note(image, model.card)
        if shared_grid is not None:
            plan = shared_grid.for_frame(image.pixels)
        else:
            plan = plan_segmentation(model, image, threshold, scale_request, deadline)
        return _segment(model, image, plan, threshold, clock, deadline)
    image = with_size_note(image, model.card)
    search = find_embryo(image.pixels)
    tensor = lineage_input(image.pixels, search, model.card)
    clock.lap("preprocess")
    output = run_model(model, tensor, deadline)
    clock.lap("inference")
    return _count_lineages(model, image, output, clock, search)


def lineage_input(pixels: np.ndarray, search: EmbryoSearch, card: ModelCard) -> np.ndarray:
    """The lineage network's input: the embryo cut out at its training framing (NoEmbryo when
    the image holds none, or several)."""
    if search.region is None:
        raise NoEmbryo(
            f"{search.problem} The lineage model counts the cells of one whole embryo, so it "
            "needs an image with one embryo and some dark margin around it."
        )
    view = embryo_centred_view(pixels, search.region, card.input.embryo_fill, card.input.size)
    tensor = build_input_tensor(view, card)
    # The embryo's head may point either way along x and its side face either way: the four
    # mirror images are one embryo, and their mean answer does not depend on which was shot.
    return np.concatenate([tensor[..., ::rows, ::cols] for rows, cols in VIEW_FLIPS])


# Rows and columns steps of the four mirror images the lineage network sees of one embryo.
VIEW_FLIPS = ((1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass(frozen=True)
class SegmentationPlan:
    """Where a segmentation runs: its working grid, and what the first look found."""

    grid: WorkingGrid
    search: EmbryoSearch
    diameter: float | None = None  # median object diameter on the grid, working pixels
    probability: np.ndarray | None = None  # the grid's map, when the first look already made it
    labels: np.ndarray | None = None  # the objects the first look found on that map
    first_look_ms: float = 0.0  # the first look's model run, reported as inference
    # Where the network looks (scale.embryo_window): this picture's embryo, or for a stack's
    # frame the whole stack's, so a slice through the embryo's cap keeps the embryo's window.
    window: EmbryoRegion | None = None


@dataclass(frozen=True)
class SharedGrid:
    """One working grid for every frame of a stack: its geometry, and where the embryo lies."""

    grid: WorkingGrid
    search: EmbryoSearch

    def for_frame(self, pixels: np.ndarray) -> SegmentationPlan:
        """The plan of one frame: the shared geometry, the frame's own contrast stretch (each
        training slice was stretched by its own percentiles), measured where its own embryo
        lies (a time-lapse embryo moves and turns), else where the stack's does."""
        search = find_embryo(pixels)
        if search.noise_only:
            return blank_plan(self.grid, search, pixels.shape)
        if search.region is None:
            search = self.search
        low, high = contrast_range(pixels, search.region)
        grid = dataclasses.replace(self.grid, low=low, high=high)
        return SegmentationPlan(grid, search, window=self.search.region)


def blank_plan(grid: WorkingGrid, search: EmbryoSearch, shape: tuple[int, int]) -> SegmentationPlan:
    """The plan of an image that shows only noise: an empty map, and no network run on it."""
    probability = np.zeros(working_shape(grid, shape), dtype=np.float32)
    labels = np.zeros(probability.shape, dtype=np.int32)
    return SegmentationPlan(grid, search, probability=probability, labels=labels)


def _guessed_grid_diameter(
    labels: np.ndarray, pixels: np.ndarray, grid: WorkingGrid
) -> float | None:
    """The object size that sizes a grid guessed from the frame: the larger median of the
    objects' connected blobs and the image's own bright blobs (None without objects, so an
    empty slice gets no second look from its noise)."""
    pieces = median_diameter(connected_blobs(labels), MIN_OBJECT_AREA_AT_MODEL_SCALE)
    if pieces is None:
        return None
    # The network may cut a nucleus larger than any it learned into trained-size pieces; the
    # image's own bright blobs still show how large it is.
    own = median_diameter(bright_blobs(working_image(pixels, grid)), MIN_OBJECT_AREA_AT_MODEL_SCALE)
    return max(pieces, own or 0.0)


def plan_segmentation(
    model: LoadedModel,
    image: DecodedImage,
    threshold: float,
    request: ScaleRequest,
    deadline: Deadline = NO_DEADLINE,
) -> SegmentationPlan:
    """Choose the working grid: from the request (or the image's pixel size), else the embryo,
    then a look at the objects; a second grid when they are outside the trained band."""
    grid_card = model.card.input.working_grid
    request = _with_calibrated_pixel_size(request, image.calibration)
    search = find_embryo(image.pixels)
    grid = initial_grid(image.pixels, grid_card, request, search.region)
    if search.noise_only:
        return blank_plan(grid, search, image.pixels.shape)
    started = time.perf_counter()
    probability, window_image, window = working_map(
        model, image.pixels, grid, deadline, search.region
    )
    first_look_ms = (time.perf_counter() - started) * 1000
    labels = label_instances(model.name, probability, threshold, grid_scale=1.0)
    diameter = median_diameter(labels, MIN_OBJECT_AREA_AT_MODEL_SCALE)
    sizing_diameter = diameter
    if CATALOGUE[model.name].sizes_by_whole_blobs:
        sizing_diameter = (
            _guessed_grid_diameter(labels, image.pixels, grid)
            if grid.source == "frame"
            else median_diameter(
                # The window holds every object: the map is 0 outside it.
                whole_round_blobs(labels[window], window_image),
                MIN_OBJECT_AREA_AT_MODEL_SCALE,
            )
        )
    refined = refined_grid(grid, sizing_diameter, grid_card, image.pixels.shape)
    if refined is None:
        return SegmentationPlan(
            grid, search, diameter, probability, labels, first_look_ms, search.region
        )
    return SegmentationPlan(refined, search, first_look_ms=first_look_ms, window=search.region)


def plan_shared_grid(
    model: LoadedModel,
    reference: DecodedImage,
    threshold: float,
    request: ScaleRequest,
    deadline: Deadline = NO_DEADLINE,
) -> SharedGrid:
    """One grid for a whole stack, chosen on a reference picture of its embryo."""
    plan = plan_segmentation(model, reference, threshold, request, deadline)
    grid = plan.grid.rescaled(1.0, f"{plan.grid.source}, one grid for the whole stack")
    return SharedGrid(grid, plan.search)


def _with_calibrated_pixel_size(request: ScaleRequest, calibration: Calibration | None):
    """The request, with the upload's own pixel size (TIFF metadata) when it gives none."""
    if request.diameter is not None or request.pixel_size_um is not None or calibration is None:
        return request
    metres = UNITS[calibration.unit][1]
    size_um = math.sqrt(calibration.pixel_width * calibration.pixel_height) * metres * 1e6
    return ScaleRequest(pixel_size_um=size_um)


def working_map(
    model: LoadedModel,
    pixels: np.ndarray,
    grid: WorkingGrid,
    deadline: Deadline = NO_DEADLINE,
    region: EmbryoRegion | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """The network's probability map of an upload on its working grid (float32, 0..1), run on
    the window around the embryo `region` (scale.embryo_window) and 0 outside it; with the
    working image of that window and the window's place on the grid."""
    fill = training_fill(model.card.input.working_grid, max(model.card.input.size))
    rows, cols = embryo_window(region, pixels.shape, fill)
    if grid.transpose:
        rows, cols = cols, rows
    full_shape = working_shape(grid, pixels.shape)
    top = min(full_shape[0], round(rows.start * grid.scale_y))
    left = min(full_shape[1], round(cols.start * grid.scale_x))
    bottom = min(full_shape[0], max(top + 1, round(rows.stop * grid.scale_y)))
    right = min(full_shape[1], max(left + 1, round(cols.stop * grid.scale_x)))
    whole_frame = (bottom - top, right - left) == full_shape
    if whole_frame or min(bottom - top, right - left) < MIN_WORKING_SIDE:
        working = working_image(pixels, grid)
        return _network_map(model, working, deadline), working, (slice(None), slice(None))
    oriented = pixels.T if grid.transpose else pixels
    window = np.ascontiguousarray(oriented[rows, cols])
    # Resized to exactly the window's place on the grid, so the pieces line up with the rest.
    scaled = dataclasses.replace(
        grid,
        transpose=False,  # the window is cut from the oriented upload
        scale_y=(bottom - top) / window.shape[0],
        scale_x=(right - left) / window.shape[1],
    )
    working = working_image(window, scaled)
    probability = np.zeros(full_shape, dtype=np.float32)
    probability[top:bottom, left:right] = _network_map(model, working, deadline)
    return probability, working, (slice(top, bottom), slice(left, right))


def _network_map(
    model: LoadedModel, working: np.ndarray, deadline: Deadline = NO_DEADLINE
) -> np.ndarray:
    """The network's probability map of a working image (float32 HxW, 0..1), tiled."""
    image, margins = with_context_margin(working)

    def run(tile: np.ndarray) -> np.ndarray:
        # The tile and its mirror image in one call, their maps averaged: on the working grid
        # a mirrored or quarter-turned upload is this mirror image, so it gets the same map.
        pair = np.stack([tile, tile[:, ::-1]])[:, None]
        tensor = np.repeat(pair, model_channels(model), axis=1)
        output = apply_output_activation(run_model(model, tensor, deadline), model.card)
        if output.ndim != 4 or output.shape[:2] != (2, 1):
            raise ModelUnavailable(
                f"The {model.name} model returned an output of shape {output.shape}, "
                "not one probability map per image."
            )
        mean = (output[0, 0] + output[1, 0, :, ::-1]) * np.float32(0.5)
        return np.clip(mean, 0.0, 1.0)

    probability = run_tiled(run, image, between_tiles=lambda: deadline.check("running the model"))
    (top, bottom), (left, right) = margins
    return probability[top : probability.shape[0] - bottom, left : probability.shape[1] - right]


def model_channels(model: LoadedModel) -> int:
    return model.card.input.channels


# An upload whose shorter side is under an eighth of the network's is enlarged more than eight
# times: its answer (often "0 objects") rests on a few pixels, and the visitor should know.
SMALLEST_SIDE_FRACTION = 8


def with_size_note(image: DecodedImage, card: ModelCard) -> DecodedImage:
    """The image, with a note added when it is too small for the network's input to mean much."""
    side = min(card.input.size)
    if min(image.width, image.height) * SMALLEST_SIDE_FRACTION >= side:
        return image
    note = (
        f"This image is only {image.width} x {image.height} pixels: the model has to enlarge "
        "it many times, so the result rests on very little detail. Upload the image at the "
        "size the microscope recorded it."
    )
    return dataclasses.replace(image, notes=image.notes + (note,))


def _segment(
    model: LoadedModel,
    image: DecodedImage,
    plan: SegmentationPlan,
    threshold: float,
    clock: _Stopwatch,
    deadline: Deadline = NO_DEADLINE,
) -> SegmentationResult:
    clock.lap("preprocess")
    probability_on_grid, grid_labels = plan.probability, plan.labels
    if probability_on_grid is None:
        probability_on_grid, _, _ = working_map(
            model, image.pixels, plan.grid, deadline, plan.window
        )
        grid_labels = None
    clock.lap("inference")
    clock.move(plan.first_look_ms, "preprocess", "inference")
    deadline.check("finding and measuring objects")
    output = NetworkOutput(
        model=model.name,
        grid_card=model.card.input.working_grid,
        grid=plan.grid,
        search=plan.search,
        probability=probability_on_grid,
        width=image.width,
        height=image.height,
        notes=image.notes,
        calibration=image.calibration,
    )
    return segment_output(output, threshold, clock=clock, grid_labels=grid_labels)


@dataclass(frozen=True)
class ObjectFilter:
    """Objects the visitor dropped: smaller than `min_area` upload pixels, or under a point
    (x, y in upload pixels) of `exclude`."""

    min_area: float = 0.0
    exclude: tuple[tuple[float, float], ...] = ()

    def dropped(self, labels: UploadLabels, objects: list[SegmentedObject]) -> set[int]:
        small = {obj.label for obj in objects if obj.area < self.min_area}
        return small | {label_at(labels, x, y) for x, y in self.exclude} - {0}


KEEP_ALL = ObjectFilter()


@dataclass(frozen=True)
class NetworkOutput:
    """What a segmentation keeps of one network run: the probability map on its working grid
    and the geometry to bring it to the upload's size. Thresholding, objects and downloads are
    made from it again without the network or the upload's pixels (devolearn_web.result_cache).
    """

    model: str
    grid_card: GridCard
    grid: WorkingGrid
    search: EmbryoSearch
    probability: np.ndarray  # float32, on the working grid, in the grid's orientation
    width: int
    height: int
    notes: tuple[str, ...]
    calibration: Calibration | None

    @property
    def nbytes(self) -> int:
        return int(self.probability.nbytes)


def segment_output(
    output: NetworkOutput,
    threshold: float,
    objects_filter: ObjectFilter = KEEP_ALL,
    clock: _Stopwatch | None = None,
    grid_labels: np.ndarray | None = None,
) -> SegmentationResult:
    """The objects of a network output at a threshold, at the upload's size (no network run);
    `grid_labels`: the objects already found on its map at this threshold, if any."""
    clock = clock or _Stopwatch(0.0)
    if grid_labels is None:
        grid_labels = label_instances(output.model, output.probability, threshold, grid_scale=1.0)
    diameter = median_diameter(grid_labels, MIN_OBJECT_AREA_AT_MODEL_SCALE)
    probability_on_grid = to_upload_orientation(output.probability, output.grid)
    small_labels = to_upload_orientation(grid_labels, output.grid)
    probability, labels, objects = _upload_size_map(
        probability_on_grid, small_labels, threshold, output.height, output.width
    )
    labels, objects = drop_objects(labels, objects, objects_filter.dropped(labels, objects))
    clock.lap("postprocess")
    report = ScaleReport(
        scale=output.grid.scale,
        source=output.grid.source,
        diameter=None if diameter is None else diameter / output.grid.scale,
        embryo=output.search.region,
    )
    # An image of noise alone was not run at any scale (blank_plan); its warning says why.
    notes = output.notes + (() if output.search.noise_only else (report.note(),))
    if output.calibration is not None:
        # Only segmentation downloads are images: a lineage answer has no pixel size to keep.
        notes += (output.calibration.note(),)
    return SegmentationResult(
        model=output.model,
        width=output.width,
        height=output.height,
        threshold=threshold,
        probability=probability,
        labels=labels,
        objects=objects,
        notes=notes,
        timings_ms=clock.timings(),
        calibration=output.calibration,
        scale=report,
        warnings=scale_warnings(diameter, output.grid_card, output.search)
        + kind_warnings(output.model, output.search),
        network=output,
    )


# The kind of image each model was trained on (the catalogue's), and what another kind looks
# like to it.
EXPECTS_OUTLINES = {name: model.expects_outlines for name, model in CATALOGUE.items()}


def kind_warnings(model_name: str, search: EmbryoSearch) -> tuple[str, ...]:
    """A sentence when the image is of another kind than the model's (membranes for nuclei)."""
    expects = EXPECTS_OUTLINES.get(model_name)
    # No embryo (a blank frame): nothing to judge the kind by, and scale_warnings says why.
    if expects is None or search.region is None or search.shows_outlines == expects:
        return ()
    if expects:
        return (
            "This image shows solid bright blobs, not bright outlines around cells: it looks "
            "like a nucleus image, and this model was trained on membrane images. Try the "
            "nucleus page.",
        )
    return (
        "This image shows bright outlines around darker regions: it looks like a membrane "
        "image, and this model was trained on nucleus (GFP-histone) images. Try the membrane "
        "page.",
    )


def cut_off_warnings(search: EmbryoSearch) -> tuple[str, ...]:
    """A sentence when the embryo reaches the image's edge (lineage: it counts a whole embryo)."""
    if search.region is None or not search.region.touches_edge:
        return ()
    return (
        "The embryo reaches the edge of the image, so part of it may be cut off: this model "
        "estimates the cells of one whole embryo, and on a cut-off one its counts are "
        "unreliable. Upload the whole embryo with some dark margin around it.",
    )


def scale_warnings(
    diameter: float | None, grid_card: GridCard, search: EmbryoSearch
) -> tuple[str, ...]:
    """Sentences for an image unlike the training data: objects outside the trained size band,
    or no single embryo to frame."""
    if search.noise_only:
        return (search.problem,)  # nothing was sized, and no framing changes an empty answer
    warnings = []
    if diameter is not None and not (grid_card.diameter_low <= diameter <= grid_card.diameter_high):
        warnings.append(
            f"The objects found are {diameter:.0f} pixels across at the scale the model ran at, "
            f"outside the {grid_card.diameter_low:.0f}-{grid_card.diameter_high:.0f} it was "
            "trained on: the count may be wrong. Give the typical object diameter (in pixels "
            "of your image) in the diameter field."
        )
    if search.region is None:
        warnings.append(
            f"{search.problem} The scale was taken from the frame, so the result depends on "
            "how the picture is framed; give the typical object diameter for a reliable answer."
        )
    return tuple(warnings)


def _upload_size_map(
    probability: np.ndarray, small_labels: np.ndarray, threshold: float, height: int, width: int
) -> tuple[np.ndarray, UploadLabels, list[SegmentedObject]]:
    """The grid's map and objects at the upload's size: the 8-bit probability (uint8, the
    PNG's), the labels clipped to the map's threshold (kept compact), and their objects.

    Made a band of rows at a time: the float map at the upload's size is never held whole."""
    probability_8bit = np.empty((height, width), dtype=np.uint8)

    def masks() -> Iterator[tuple[int, np.ndarray]]:
        for top, band in resize_in_bands(probability, (height, width)):
            band = np.clip(band, 0.0, 1.0)
            probability_8bit[top : top + band.shape[0]] = probability_to_uint8(band)
            yield top, threshold_probability_map(band, threshold)

    labels, objects = upscale_labels_in_bands(small_labels, masks(), (height, width))
    return probability_8bit, labels, objects


def _count_lineages(
    model: LoadedModel,
    image: DecodedImage,
    output: np.ndarray,
    clock: _Stopwatch,
    search: EmbryoSearch,
) -> LineageResult:
    card_output = model.card.output
    lineages, maxima = card_output.lineages, card_output.maxima
    # One row per mirror image of the embryo (VIEW_FLIPS): their mean.
    values = apply_output_activation(output, model.card).reshape(len(VIEW_FLIPS), -1).mean(axis=0)
    if values.size != len(lineages):
        raise ModelUnavailable(
            f"The {model.name} model returned {values.size} numbers, "
            f"not one per lineage ({len(lineages)})."
        )
    counts = lineage_counts(values, lineages, maxima, card_output.calibration)
    populations = {lineage: int(count) for lineage, count in zip(lineages, counts, strict=True)}
    ranged = card_output.training_range.items()
    exceeded = [
        f"{lineage} is predicted at {populations[lineage]} cells, past the {limit}"
        for lineage, limit in ranged
        if populations[lineage] > limit
    ]
    at_end = [
        f"{lineage} is predicted at {populations[lineage]} cells, at the end of the range the "
        f"model was trained on (up to {limit})"
        for lineage, limit in ranged
        if END_OF_RANGE_FRACTION * limit <= populations[lineage] <= limit
    ]
    notes = image.notes
    if exceeded:
        notes += (
            f"Lineage {'; '.join(exceeded)} the model was trained on: "
            "these counts are an extrapolation.",
        )
    if at_end:
        notes += (
            f"Lineage {'; '.join(at_end)}: its counts stop rising there, so an older embryo "
            "reads the same and these counts may be too low.",
        )
    clock.lap("postprocess")
    return LineageResult(
        model=model.name,
        populations=populations,
        total=int(sum(populations.values())),
        outside_training_range=bool(exceeded),
        at_end_of_training_range=bool(at_end),
        notes=notes,
        timings_ms=clock.timings(),
        embryo=search.region,
        warnings=kind_warnings(model.name, search) + cut_off_warnings(search),
    )


def predict_batch(
    registry: ModelRegistry,
    name: str,
    images: Sequence[DecodedImage],
    threshold: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    scale_request: ScaleRequest = AUTOMATIC_SCALE,
    shared_grid: SharedGrid | None = None,
) -> list[SegmentationResult | LineageResult]:
    """Run a model on several decoded images (the frames of a stack or movie).

    Segmentation frames run on `shared_grid` when given (else each on its own, as the same
    image uploaded alone); lineage frames go through ONE ONNX Runtime call (dynamic batch
    axis), each result's timings carrying its share of the batch's preprocess and inference.
    """
    model = registry.get(name)
    card = model.card
    if card.is_segmentation:
        threshold = resolve_threshold(threshold, card)
        return [
            predict(registry, name, image, threshold, 0.0, deadline, scale_request, shared_grid)
            for image in images
        ]
    if not images:
        return []
    images = [with_size_note(image, card) for image in images]
    started = time.perf_counter()
    searches = [find_embryo(image.pixels) for image in images]
    pairs = zip(images, searches, strict=True)
    tensor = np.concatenate([lineage_input(image.pixels, search, card) for image, search in pairs])
    preprocessed = time.perf_counter()
    output = run_model(model, tensor, deadline)
    share = {
        "preprocess": (preprocessed - started) * 1000 / len(images),
        "inference": (time.perf_counter() - preprocessed) * 1000 / len(images),
    }
    return [
        _count_lineages(
            model,
            image,
            output[index * len(VIEW_FLIPS) : (index + 1) * len(VIEW_FLIPS)],
            _Stopwatch(0.0, **share),
            search,
        )
        for index, (image, search) in enumerate(zip(images, searches, strict=True))
    ]


class _Stopwatch:
    """Milliseconds per named stage, plus the total (which includes the decode time given)."""

    def __init__(self, decode_ms: float, **earlier_ms: float) -> None:
        self._timings = {"decode": decode_ms, **earlier_ms}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._timings[stage] = (now - self._last) * 1000
        self._last = now

    def move(self, milliseconds: float, source: str, target: str) -> None:
        """Count time spent inside one stage's lap as another stage's."""
        self._timings[source] -= milliseconds
        self._timings[target] += milliseconds

    def timings(self) -> dict[str, float]:
        return {**self._timings, "total": sum(self._timings.values())}
