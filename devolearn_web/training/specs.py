"""What training needs of each model beyond the catalogue: input layout, output meaning, framing.

Names, titles, tasks, the lineage order and maxima come from devolearn_web.catalogue; a spec
exists for every catalogue entry and for nothing else (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devolearn_web.catalogue import CATALOGUE, LINEAGE_MAXIMA, LINEAGE_ORDER, unknown_model_sentence
from devolearn_web.imaging import MODEL_HIGH_PERCENTILE, MODEL_LOW_PERCENTILE
from devolearn_web.lineage_counts import lineage_counts

MODEL_SIDE = 256
LINEAGES = LINEAGE_ORDER
DEFAULT_THRESHOLD = 0.5
# Segmentation networks `train --network` can train in place of the shipped one, to measure
# against (models.REFERENCE_NETWORKS builds them; named here so the CLI needs no torch).
REFERENCE_NETWORK_NAMES = ("fpn-resnet18", "unet-resnet34")


@dataclass(frozen=True)
class ModelSpec:
    """One model's fixed facts, shared by training, export, evaluation and its card."""

    name: str
    title: str
    task: str  # "segmentation" or "lineage"
    architecture: str
    channels: int
    normalisation: str  # "unit" ([0, 1]) or "symmetric" ([-1, 1])
    input_description: str
    output_meaning: str
    # How uploads are framed for the network (the card's input section): a segmentation
    # model's working_grid, the lineage model's embryo_fill.
    framing: dict

    @property
    def is_segmentation(self) -> bool:
        return self.task == "segmentation"


_FPN = "segmentation_models_pytorch FPN, encoder resnet18, in_channels=1, classes=1"
# devolearn_web.imaging.normalise_for_model, which training applies exactly as the app does.
_STRETCH = (
    f"contrast-stretched to [0, 1] (percentiles {MODEL_LOW_PERCENTILE:g} to "
    f"{MODEL_HIGH_PERCENTILE:g} of the resized image, clipped)"
)

# The training frames' framing, measured on simulated frames of the training framing by
# `python -m devolearn_web.training framing` (docs/training.md, "Framing"): the embryo as
# devolearn_web.embryo.find_embryo sees it, and the objects' equivalent diameters on the
# 256x256 grid (the 5th, 50th and 95th percentiles of each frame's median).
_WORKING_GRID_NOTE = (
    "Uploads are brought to this grid: objects scaled to the trained diameters, the embryo's "
    "long axis along x, rows stretched by aspect as the 256x256 training frames were."
)
MODEL_SPECS: dict[str, ModelSpec] = {
    "membrane": ModelSpec(
        name="membrane",
        title=CATALOGUE["membrane"].title,
        task=CATALOGUE["membrane"].task,
        architecture=f"{_FPN}, sigmoid",
        channels=1,
        normalisation="unit",
        input_description=(
            "grayscale membrane z-slice, brought to the working grid (input.working_grid), "
            f"then {_STRETCH}"
        ),
        output_meaning=(
            "per-pixel probability that the pixel lies inside a cell (membranes are gaps), "
            "so one connected component is one cell"
        ),
        framing={
            "working_grid": {
                "aspect": 1.39,
                "embryo_length_px": 177.0,
                "object_diameter_px": {"median": 36.0, "range": [15.6, 164.0]},
                "um_per_px": 0.219,
                "description": _WORKING_GRID_NOTE,
            }
        },
    ),
    "nucleus": ModelSpec(
        name="nucleus",
        title=CATALOGUE["nucleus"].title,
        task=CATALOGUE["nucleus"].task,
        architecture=f"{_FPN}, sigmoid",
        channels=1,
        normalisation="unit",
        input_description=(
            "grayscale nucleus z-slice or whole-embryo projection (for colour images the "
            "signal channel), brought to the working grid (input.working_grid), then "
            f"{_STRETCH}"
        ),
        output_meaning="per-pixel probability that the pixel belongs to a nucleus",
        framing={
            "working_grid": {
                "aspect": 1.383,
                "embryo_length_px": 128.0,
                "object_diameter_px": {"median": 14.1, "range": [7.0, 43.5]},
                "um_per_px": 0.237,
                "description": _WORKING_GRID_NOTE,
            }
        },
    ),
    "lineage": ModelSpec(
        name="lineage",
        title=CATALOGUE["lineage"].title,
        task=CATALOGUE["lineage"].task,
        architecture=f"torchvision resnet18, fc = Linear(512, {len(LINEAGE_ORDER)}), sigmoid",
        channels=3,
        normalisation="symmetric",
        input_description=(
            "grayscale image of the whole embryo (for colour images the signal channel), resized "
            f"to 256x256, {_STRETCH}, copied to 3 channels, then (x - 0.5) / 0.5 into [-1, 1]"
        ),
        output_meaning=(
            "living cells per founder lineage divided by that lineage's maximum, in the order "
            f"{', '.join(LINEAGE_ORDER)}; counts = clip(output * maxima, 0), mapped through "
            "output.calibration when the card has one, rounded"
        ),
        framing={
            "embryo_fill": {
                "length": 0.572,
                "width": 0.649,
                "description": (
                    "The embryo is found, laid along x and cut out so that its long axis fills "
                    "this share of the input's width and its short axis this share of its "
                    "height, as in the training frames."
                ),
            }
        },
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a model by name; an unknown name lists the valid ones."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(unknown_model_sentence(name)) from None


def lineage_maxima() -> np.ndarray:
    """The per-lineage maxima as float32, shape (7,)."""
    return np.asarray(LINEAGE_MAXIMA, dtype=np.float32)


def counts_from_scaled(scaled: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Cell counts from scaled outputs (float, ..., 7) exactly as the app reads them: int64."""
    return lineage_counts(scaled, LINEAGES, LINEAGE_MAXIMA, calibration)
