"""The model card (models/<name>.json) as a typed, frozen value, parsed and checked once.

`parse_card` turns the JSON into a ModelCard or raises CardError with a sentence naming the
field at fault; the app then reads typed fields, never `.get(...)` with a default of its own.
A ModelCard still reads as its JSON (a read-only mapping) for what shows the card whole: the
card page, the API's model list and the BioImage.IO package.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from devolearn_web.catalogue import CATALOGUE, TASKS, entry
from devolearn_web.lineage_counts import calibration_problem
from devolearn_web.scale import GridCard

NORMALISATIONS = ("unit", "symmetric")
ACTIVATIONS = ("none", "sigmoid")


class CardError(ValueError):
    """A card the app cannot use; the message names the field at fault."""


@dataclass(frozen=True)
class CardInput:
    """What the network takes: tensor name, size (height, width), channels, scaling, framing."""

    name: str
    size: tuple[int, int]
    channels: int  # 1 or 3
    normalisation: str  # "unit" ([0, 1]) or "symmetric" ([-1, 1])
    working_grid: GridCard | None = None  # segmentation: the training scale
    embryo_fill: tuple[float, float] | None = None  # lineage: (length, width) shares of the input


@dataclass(frozen=True)
class CardOutput:
    """What the network gives and how the app reads it."""

    name: str
    activation: str  # "none" (the file ends in a sigmoid) or "sigmoid" (the app applies it)
    default_threshold: float | None = None  # segmentation
    lineages: tuple[str, ...] = ()  # lineage: output order
    maxima: tuple[float, ...] = ()  # lineage: each output is a share of its maximum
    training_range: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    calibration: Mapping[str, Any] | None = None  # lineage: lineage_counts' calibration curves


@dataclass(frozen=True, eq=False)
class ModelCard(Mapping):
    """One model's card: the typed fields the app uses, and the JSON it came from."""

    name: str
    task: str
    title: str | None
    version: str
    file: str  # the float32 ONNX file, a plain name in the models folder
    sha256: str | None  # lowercase hex; None when the card states none
    input: CardInput
    output: CardOutput
    json: Mapping[str, Any] = field(repr=False)

    @property
    def is_segmentation(self) -> bool:
        return self.task == "segmentation"

    def __getitem__(self, key: str) -> Any:
        return self.json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.json)

    def __len__(self) -> int:
        return len(self.json)


def parse_card(name: str, card: object) -> ModelCard:
    """The typed card of model `name` from its JSON; CardError naming the first bad field."""
    if not isinstance(card, dict):
        raise CardError("it is not a JSON object")
    if card.get("name") != name:
        raise CardError(f"its name is {card.get('name')!r}, expected {name!r}")
    task = card.get("task")
    if task not in TASKS:
        raise CardError(f"task must be one of {TASKS}")
    if name in CATALOGUE and task != entry(name).task:
        raise CardError(f"task is {task!r}, but the {name} model is a {entry(name).task} model")
    model_input, output = card.get("input"), card.get("output")
    if not isinstance(model_input, dict) or not isinstance(output, dict):
        raise CardError("it needs 'input' and 'output' sections")
    file_name = card.get("file", f"{name}.onnx")
    if not isinstance(file_name, str) or not file_name or Path(file_name).name != file_name:
        raise CardError("file must be a plain file name in the models folder")
    sha256 = card.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise CardError("sha256 must be a string of hex digits")
    title, version = card.get("title"), card.get("version", "")
    if title is not None and not isinstance(title, str):
        raise CardError("title must be a string")
    if not isinstance(version, str):
        raise CardError("version must be a string")
    parsed_input = _parse_input(model_input, task)
    parsed_output = _parse_output(output, task)
    return ModelCard(
        name=name,
        task=task,
        title=title,
        version=version,
        file=file_name,
        sha256=sha256.lower() if sha256 else None,
        input=parsed_input,
        output=parsed_output,
        json=MappingProxyType(card),
    )


def _parse_input(section: dict, task: str) -> CardInput:
    size = section.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(s) for s in size)):
        raise CardError("input.size must be [height, width]")
    channels = section.get("channels")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise CardError("input.channels must be 1 or 3")
    if section.get("normalisation") not in NORMALISATIONS:
        raise CardError(f"input.normalisation must be one of {NORMALISATIONS}")
    tensor = _tensor_name(section, "input")
    if task == "segmentation":
        grid = section.get("working_grid")
        if not _working_grid_ok(grid):
            raise CardError(
                "input.working_grid needs positive aspect, embryo_length_px and um_per_px, and "
                "object_diameter_px with a median inside its range [low, high]"
            )
        return CardInput(
            tensor,
            (size[0], size[1]),
            channels,
            section["normalisation"],
            working_grid=GridCard.from_section(grid),
        )
    fill = section.get("embryo_fill")
    if not (
        isinstance(fill, dict) and all(_fraction(fill.get(key)) for key in ("length", "width"))
    ):
        raise CardError("input.embryo_fill needs length and width, fractions above 0 and up to 1")
    return CardInput(
        tensor,
        (size[0], size[1]),
        channels,
        section["normalisation"],
        embryo_fill=(float(fill["length"]), float(fill["width"])),
    )


def _parse_output(section: dict, task: str) -> CardOutput:
    if section.get("activation") not in ACTIVATIONS:
        raise CardError(f"output.activation must be one of {ACTIVATIONS}")
    tensor = _tensor_name(section, "output")
    if task == "segmentation":
        threshold = section.get("default_threshold")
        if not _number(threshold) or not 0 <= threshold <= 1:
            raise CardError("output.default_threshold must be a number from 0 to 1")
        return CardOutput(tensor, section["activation"], default_threshold=float(threshold))
    lineages, maxima = section.get("lineages"), section.get("maxima")
    if not (isinstance(lineages, list) and isinstance(maxima, list)):
        raise CardError("output.lineages and output.maxima must be lists")
    if len(lineages) != len(maxima) or not lineages:
        raise CardError("output.lineages and output.maxima must have the same length")
    order = [lineage.key for lineage in entry("lineage").lineages]
    if lineages != order:
        raise CardError(f"output.lineages must be {order}, the order the app reports them in")
    if not all(_positive(value) for value in maxima):
        raise CardError("output.maxima must be positive numbers")
    calibration = section.get("calibration")
    if "calibration" in section:
        problem = calibration_problem(calibration, lineages)
        if problem:
            raise CardError(problem)
    training_range = section.get("training_range", entry("lineage").training_range)
    if not (
        isinstance(training_range, Mapping)
        and all(key in lineages and _positive(value) for key, value in training_range.items())
    ):
        raise CardError(
            "output.training_range must map lineages to their largest trained count, "
            "such as {'A': 250}"
        )
    return CardOutput(
        tensor,
        section["activation"],
        lineages=tuple(lineages),
        maxima=tuple(float(value) for value in maxima),
        training_range=MappingProxyType(dict(training_range)),
        calibration=calibration,
    )


def _tensor_name(section: dict, default: str) -> str:
    tensor = section.get("name", default)
    if not isinstance(tensor, str) or not tensor:
        raise CardError(f"{default}.name must be the network's {default} tensor name")
    return tensor


def _working_grid_ok(grid: object) -> bool:
    if not isinstance(grid, dict):
        return False
    if not all(_positive(grid.get(key)) for key in ("aspect", "embryo_length_px", "um_per_px")):
        return False
    diameter = grid.get("object_diameter_px")
    if not isinstance(diameter, dict) or not _positive(diameter.get("median")):
        return False
    band = diameter.get("range")
    return (
        isinstance(band, list)
        and len(band) == 2
        and all(_positive(value) for value in band)
        and band[0] <= diameter["median"] <= band[1]
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return _number(value) and 0 < value < math.inf


def _fraction(value: object) -> bool:
    return _positive(value) and value <= 1


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
