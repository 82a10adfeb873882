"""The three models as pipelines: preprocess (from the model card) -> ONNX Runtime -> postprocess.

Order of preprocessing: resize to the card's input size first, then `normalise_for_model`, so the
percentile stretch sees the same 256x256 picture the network sees (training does the same).
Objects are found on the network's own grid (as the evaluation counts them), then scaled to the
upload's size and clipped to the thresholded upload-size map, so they are measured in upload
pixels with smooth outlines.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime
from scipy.special import expit

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.calibration import Calibration
from devolearn_web.errors import BadParameter, ModelUnavailable
from devolearn_web.imaging import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    decode_image,
    normalise_for_model,
    png_data_url,
    probability_to_png,
    resize_image,
)
from devolearn_web.lineage_counts import lineage_counts
from devolearn_web.registry import ORT_ERRORS, LoadedModel, ModelRegistry
from devolearn_web.segmentation import (
    SegmentedObject,
    label_instances,
    measure_objects,
    threshold_probability_map,
    upscale_labels,
)

T = TypeVar("T")

DEFAULT_TRAINING_RANGE = {"A": 250}
# The lineage network ends in a sigmoid and its calibration is flat past the range's end, so an
# embryo older than the training range never reads past the limit: it piles up just under it
# (a simulated embryo of A = 256 read 247). A count this close to the limit may be an older one.
END_OF_RANGE_FRACTION = 0.96


@dataclass
class SegmentationResult:
    """A segmentation at the upload's size: probability float32 HxW, labels int32 HxW, objects."""

    model: str
    width: int
    height: int
    threshold: float
    probability: np.ndarray
    labels: np.ndarray
    objects: list[SegmentedObject]
    notes: tuple[str, ...]
    timings_ms: dict[str, float]
    probability_png: bytes = field(default=b"", repr=False)
    calibration: Calibration | None = None

    @property
    def count(self) -> int:
        return len(self.objects)

    def to_json(self) -> dict:
        """The API's segmentation answer."""
        png = self.probability_png or probability_to_png(self.probability)
        answer = {
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "threshold": self.threshold,
            "count": self.count,
            "objects": [obj.to_dict() for obj in self.objects],
            "probability": png_data_url(png),
            "notes": list(self.notes),
            "timings_ms": rounded_timings(self.timings_ms),
        }
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

    def to_json(self) -> dict:
        """The API's lineage answer."""
        return {
            "model": self.model,
            "populations": dict(self.populations),
            "total": self.total,
            "outside_training_range": self.outside_training_range,
            "at_end_of_training_range": self.at_end_of_training_range,
            "notes": list(self.notes),
            "timings_ms": rounded_timings(self.timings_ms),
        }


def rounded_timings(timings: dict[str, float]) -> dict[str, float]:
    """Stage timings in milliseconds, rounded to 0.01 ms for the answer."""
    return {key: round(value, 2) for key, value in timings.items()}


def build_input_tensor(pixels: np.ndarray, card: dict) -> np.ndarray:
    """float32 (1, C, H, W) network input from a float32 HxW image, as the model card says."""
    height, width = card["input"]["size"]
    normalised = normalise_for_model(resize_image(pixels, (height, width)))
    if card["input"]["normalisation"] == "symmetric":
        normalised = (normalised - np.float32(0.5)) / np.float32(0.5)
    channels = int(card["input"]["channels"])
    return np.ascontiguousarray(np.repeat(normalised[None, None], channels, axis=1))


def apply_output_activation(output: np.ndarray, card: dict) -> np.ndarray:
    """The network's output as float32, through a sigmoid when the card says the file has none."""
    output = np.asarray(output, dtype=np.float32)
    if card["output"]["activation"] == "sigmoid":
        # expit, not 1 / (1 + exp(-x)): a confident logit below -88 would overflow float32.
        output = expit(output)
    return output.astype(np.float32)


def run_model(
    model: LoadedModel, tensor: np.ndarray, deadline: Deadline = NO_DEADLINE
) -> np.ndarray:
    """The model's raw output for one input tensor; ModelUnavailable when the run fails, and
    TookTooLong when the deadline stops it."""
    input_name = model.card["input"].get("name", "input")
    output_name = model.card["output"].get("name", "output")
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


def resolve_threshold(threshold: float | None, card: dict) -> float:
    """The threshold to use: the caller's (checked to be in 0..1) or the card's default."""
    if threshold is None:
        return float(card["output"]["default_threshold"])
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise BadParameter("The threshold must be a number from 0 to 1.")
    if not 0.0 <= threshold <= 1.0:
        raise BadParameter(f"The threshold must be between 0 and 1; {threshold:g} is not.")
    return float(threshold)


def predict(
    registry: ModelRegistry,
    name: str,
    image: DecodedImage,
    threshold: float | None = None,
    decode_ms: float = 0.0,
    deadline: Deadline = NO_DEADLINE,
) -> SegmentationResult | LineageResult:
    """Run one model on a decoded image; decode_ms (time spent decoding) goes into the timings.

    The deadline is checked before each stage and stops the model run itself (TookTooLong)."""
    model = registry.get(name)
    card = model.card
    if card["task"] == "segmentation":
        threshold = resolve_threshold(threshold, card)
    image = with_size_note(image, card)
    clock = _Stopwatch(decode_ms)
    deadline.check("preparing the image for the model")
    tensor = build_input_tensor(image.pixels, card)
    clock.lap("preprocess")
    output = run_model(model, tensor, deadline)
    clock.lap("inference")
    deadline.check("finding and measuring objects")
    if card["task"] == "segmentation":
        return _segment(model, image, output, threshold, clock)
    return _count_lineages(model, image, output, clock)


# An upload whose shorter side is under an eighth of the network's is enlarged more than eight
# times: its answer (often "0 objects") rests on a few pixels, and the visitor should know.
SMALLEST_SIDE_FRACTION = 8


def with_size_note(image: DecodedImage, card: dict) -> DecodedImage:
    """The image, with a note added when it is too small for the network's input to mean much."""
    side = min(card["input"]["size"])
    if min(image.width, image.height) * SMALLEST_SIDE_FRACTION >= side:
        return image
    note = (
        f"This image is only {image.width} x {image.height} pixels: the model enlarges it to "
        f"{side} x {side}, so the result rests on very little detail. Upload the image at the "
        "size the microscope recorded it."
    )
    return dataclasses.replace(image, notes=image.notes + (note,))


def _segment(
    model: LoadedModel,
    image: DecodedImage,
    output: np.ndarray,
    threshold: float,
    clock: _Stopwatch,
) -> SegmentationResult:
    activated = np.clip(apply_output_activation(output, model.card), 0.0, 1.0)
    probability_at_model_size = _single_map(activated, model)
    # The upload-size map and its PNG need only the network's map, and so does the split:
    # the ONNX Runtime threads are idle now, so both run at once (resizing and zlib release
    # the GIL), which takes 5-7 ms off a 708x512 request.
    upload_size_map = _start_in_thread(
        lambda: _upload_size_map(probability_at_model_size, image.height, image.width)
    )
    # Objects are found (and touching ones split) on the network's own grid, which holds all
    # the detail the map has, as the evaluation counts them, then scaled to the upload clipped
    # to its threshold mask: the split costs the same for any upload (80 ms at 708x512 and 9 s
    # at 12 megapixels on the upload-size map), and the count does not depend on the size a
    # visitor happens to save their image at.
    small_labels = label_instances(model.name, probability_at_model_size, threshold)
    probability, png = upload_size_map()
    labels = upscale_labels(small_labels, threshold_probability_map(probability, threshold))
    objects = measure_objects(labels)
    clock.lap("postprocess")
    notes = image.notes
    if image.calibration is not None:
        # Only segmentation downloads are images: a lineage answer has no pixel size to keep.
        notes += (image.calibration.note(),)
    return SegmentationResult(
        model=model.name,
        width=image.width,
        height=image.height,
        threshold=threshold,
        probability=probability,
        labels=labels,
        objects=objects,
        notes=notes,
        timings_ms=clock.timings(),
        probability_png=png,
        calibration=image.calibration,
    )


def _upload_size_map(probability: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bytes]:
    """The network's map resized to the upload (float32 HxW in 0..1) and its 8-bit PNG."""
    resized = np.clip(resize_image(probability, (height, width)), 0.0, 1.0)
    return resized, probability_to_png(resized)


def _start_in_thread(function: Callable[[], T]) -> Callable[[], T]:
    """Start `function` in a helper thread; the callable returned waits for its result (or
    raises its exception in the caller's thread)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="devolearn-postprocess", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def _single_map(output: np.ndarray, model: LoadedModel) -> np.ndarray:
    squeezed = np.squeeze(output)
    if squeezed.ndim != 2:
        raise ModelUnavailable(
            f"The {model.name} model returned an output of shape {output.shape}, "
            "not one probability map."
        )
    return squeezed


def _count_lineages(
    model: LoadedModel, image: DecodedImage, output: np.ndarray, clock: _Stopwatch
) -> LineageResult:
    card_output = model.card["output"]
    lineages, maxima = list(card_output["lineages"]), card_output["maxima"]
    values = apply_output_activation(output, model.card).reshape(-1)
    if values.size != len(lineages):
        raise ModelUnavailable(
            f"The {model.name} model returned {values.size} numbers, "
            f"not one per lineage ({len(lineages)})."
        )
    counts = lineage_counts(values, lineages, maxima, card_output.get("calibration"))
    populations = {lineage: int(count) for lineage, count in zip(lineages, counts, strict=True)}
    training_range = card_output.get("training_range", DEFAULT_TRAINING_RANGE)
    ranged = [
        (lineage, limit) for lineage, limit in training_range.items() if lineage in populations
    ]
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
    )


def predict_batch(
    registry: ModelRegistry,
    name: str,
    images: Sequence[DecodedImage],
    threshold: float | None = None,
    deadline: Deadline = NO_DEADLINE,
) -> list[SegmentationResult | LineageResult]:
    """Run a model on several decoded images in ONE ONNX Runtime call (dynamic batch axis).

    Each result's timings carry its share of the batch's preprocess and inference time.
    """
    model = registry.get(name)
    card = model.card
    if card["task"] == "segmentation":
        threshold = resolve_threshold(threshold, card)
    if not images:
        return []
    images = [with_size_note(image, card) for image in images]
    started = time.perf_counter()
    tensor = np.concatenate([build_input_tensor(image.pixels, card) for image in images])
    preprocessed = time.perf_counter()
    output = run_model(model, tensor, deadline)
    deadline.check("finding and measuring objects")
    share = {
        "preprocess": (preprocessed - started) * 1000 / len(images),
        "inference": (time.perf_counter() - preprocessed) * 1000 / len(images),
    }
    results: list[SegmentationResult | LineageResult] = []
    for index, image in enumerate(images):
        clock = _Stopwatch(0.0, **share)
        row = output[index : index + 1]
        if card["task"] == "segmentation":
            results.append(_segment(model, image, row, threshold, clock))
        else:
            results.append(_count_lineages(model, image, row, clock))
    return results


def predict_bytes(
    registry: ModelRegistry,
    name: str,
    data: bytes,
    filename: str | None = None,
    threshold: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    deadline: Deadline = NO_DEADLINE,
    channel: int | None = None,
) -> tuple[SegmentationResult | LineageResult, DecodedImage]:
    """Decode an upload in memory and run a model on it; the result and the decoded image."""
    registry.card(name)  # an unknown or uninstalled model fails before any decoding work
    started = time.perf_counter()
    image = decode_image(data, filename, max_pixels=max_pixels, channel=channel)
    decode_ms = (time.perf_counter() - started) * 1000
    result = predict(registry, name, image, threshold, decode_ms=decode_ms, deadline=deadline)
    return result, image


def predict_file(name: str, path: Path, models_dir: Path) -> dict:
    """Decode an image file, run a model on it and return the API's JSON answer (for scripts)."""
    registry = _registry_for(Path(models_dir).resolve())
    result, _ = predict_bytes(registry, name, Path(path).read_bytes(), filename=Path(path).name)
    return result.to_json()


@functools.lru_cache(maxsize=8)
def _registry_for(models_dir: Path) -> ModelRegistry:
    # Scripts call predict_file in loops: one registry per folder keeps the sessions loaded.
    return ModelRegistry(models_dir)


class _Stopwatch:
    """Milliseconds per named stage, plus the total (which includes the decode time given)."""

    def __init__(self, decode_ms: float, **earlier_ms: float) -> None:
        self._timings = {"decode": decode_ms, **earlier_ms}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._timings[stage] = (now - self._last) * 1000
        self._last = now

    def timings(self) -> dict[str, float]:
        return {**self._timings, "total": sum(self._timings.values())}
