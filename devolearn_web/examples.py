"""The example gallery: an allow-list of images in static/examples/ offered on each model page."""

from __future__ import annotations

from dataclasses import dataclass

EXAMPLES_FOLDER = "examples"  # inside the app's static folder
REAL_SAMPLE_CREDIT = "Real sample from the devolearn package · MIT licence, © 2020 DevoLearn"
REAL_SAMPLE_LICENCE = "LICENSE-devolearn.txt"
SIMULATED_CREDIT = "Simulated by this project (python -m devolearn_web.training.showcase)"


@dataclass(frozen=True)
class Example:
    """One example: its file in static/examples/, a title, a credit and the models it suits."""

    filename: str
    title: str
    credit: str
    models: tuple[str, ...]
    licence: str | None = None


# Adding an example is one line here plus the file in static/examples/; thumbnails are made
# by the app from the file itself.
EXAMPLES: tuple[Example, ...] = (
    Example(
        "seg_sample.jpg",
        "Early embryo, membrane z-slice (about 5 cells)",
        REAL_SAMPLE_CREDIT,
        ("membrane",),
        REAL_SAMPLE_LICENCE,
    ),
    Example(
        "seg_sample_16bit.tif",
        "The same membrane slice as a 16-bit TIFF",
        REAL_SAMPLE_CREDIT + " (converted to 16 bit by this project)",
        ("membrane",),
        REAL_SAMPLE_LICENCE,
    ),
    Example(
        "embryo_sample.png",
        "Whole embryo, GFP nuclei (about 90), colour projection",
        REAL_SAMPLE_CREDIT,
        ("nucleus", "lineage"),
        REAL_SAMPLE_LICENCE,
    ),
    Example(
        "embryo_sample_16bit.tif",
        "The same embryo's green channel as a 16-bit TIFF",
        REAL_SAMPLE_CREDIT + " (converted to 16 bit by this project)",
        ("nucleus", "lineage"),
        REAL_SAMPLE_LICENCE,
    ),
    Example(
        "simulated_membrane_slice.png",
        "Simulated membrane z-slice, a later embryo",
        SIMULATED_CREDIT,
        ("membrane",),
    ),
    Example(
        "simulated_nucleus_slice_16bit.tif",
        "Simulated nucleus z-slice, 16-bit TIFF",
        SIMULATED_CREDIT,
        ("nucleus",),
    ),
    Example(
        "simulated_nucleus_stack_16bit.tif",
        "Simulated nucleus z-stack, 6 slices (multi-page TIFF)",
        SIMULATED_CREDIT,
        ("nucleus",),
    ),
    Example(
        "simulated_embryo_projection.png",
        "Simulated embryo of 129 cells (truth: A 64, E 8, M 32, P 0, C 15, D 8, Z 2)",
        SIMULATED_CREDIT,
        ("lineage", "nucleus"),
    ),
)


def examples_for(model: str) -> list[Example]:
    """The examples offered on one model's page, in manifest order."""
    return [example for example in EXAMPLES if model in example.models]


def find_example(filename: str) -> Example | None:
    """The manifest entry with exactly this file name, or None (the allow-list check)."""
    return next((example for example in EXAMPLES if example.filename == filename), None)


def licence_files() -> set[str]:
    """Licence files the examples point to; served beside them."""
    return {example.licence for example in EXAMPLES if example.licence}
