"""The model catalogue: one entry per model with the facts the app and training share.

Everything that names the models (routes, pages, figures, downloads, OpenAPI, the CLI, jobs,
training) reads them here. What a model file measured (sizes, thresholds, calibration) is on its
card instead (devolearn_web.model_cards). Plain data: no numpy, no ONNX Runtime, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from devolearn_web.errors import UnknownModel

TASKS = ("segmentation", "lineage")


@dataclass(frozen=True)
class SplitSettings:
    """How touching objects are cut apart: watershed of the smoothed distance map, one seed per
    local maximum. Sizes are in model pixels (the 256x256 grid) and grow with the map."""

    peak_window: int = 3  # a seed is the highest point within this many pixels around it
    smoothing_sigma: float = 1.0  # Gaussian blur of the distance map, merging ragged peaks
    # The window also grows to this fraction of the local thickness (the distance value), so
    # a big cell's uneven ridge gives one seed while small touching nuclei still get two.
    size_factor: float = 0.0
    # How much the probability map adds to the distance map (distance pixels at model scale per
    # unit of probability): where the threshold joins two crowded nuclei, the network's dip in
    # confidence between them still marks the border. The default only breaks ties between
    # flat plateaus.
    probability_weight: float = 0.01
    # Pieces the split leaves under this many model pixels are dropped (None: kept). A dim,
    # out-of-focus nucleus behind the slice shows as such a speck, and the labels leave it out.
    min_split_area: int | None = None


@dataclass(frozen=True)
class Lineage:
    """One founder lineage the lineage model counts, and its largest count in the training data."""

    key: str
    founder: str
    maximum: int


@dataclass(frozen=True)
class PageWords:
    """The words around one model's page; the numbers come from its model card."""

    heading: str
    eyebrow: str
    summary: str
    input_hint: str
    count_noun: str
    count_noun_one: str
    mask_meaning: str = ""
    # When not to trust the model, a sentence each (drawn from its card's limitations).
    do_not_trust: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageWords:
    """How the model's BioImage.IO package names and describes it (a tensor's description is at
    most 128 characters there)."""

    name: str
    example: str  # the image in static/examples/ its test input is made from
    channel: str  # the name of the input's one channel
    output: str  # the output tensor's description
    objects: str = ""  # segmentation: how the package README says objects are told apart


@dataclass(frozen=True)
class CatalogueEntry:
    """One model: what it does, how its page and figures look, how its objects are split."""

    name: str
    title: str  # the title training writes on the card
    task: str  # one of TASKS
    page: PageWords
    figures: tuple[str, ...]  # the figures its page shows, in order
    package: PackageWords  # its BioImage.IO package
    # Trained on images of bright outlines around cells (membranes) rather than solid blobs:
    # an upload of the other kind gets a warning.
    expects_outlines: bool = False
    # Its objects are nuclei, so a stack's can be linked through z (3D) and time (tracks).
    assembles_nuclei: bool = False
    # Its objects are solid and round, so a convex blob the split cut into several pieces is
    # one object shown far larger than trained: the grid is sized by the whole blob.
    sizes_by_whole_blobs: bool = False
    split: SplitSettings | None = None  # segmentation: how touching objects are cut apart
    lineages: tuple[Lineage, ...] = ()  # lineage: the outputs, in the network's order
    # lineage: the largest count per lineage the training data reached; past it, extrapolation.
    training_range: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_segmentation(self) -> bool:
        return self.task == "segmentation"


# The lineage network's outputs in order. The original DevoLearn training data stopped at
# A = 250; the maxima are every lineage's largest count then (docs: domain.md), and the network
# reads each output as a share of its maximum.
LINEAGES = (
    Lineage("A", "AB lineage", 250),
    Lineage("E", "E lineage (gut)", 16),
    Lineage("M", "MS lineage", 78),
    Lineage("P", "P lineage (germline, P4)", 1),
    Lineage("C", "C lineage", 31),
    Lineage("D", "D lineage", 16),
    Lineage("Z", "Z2/Z3 (germline)", 2),
)
LINEAGE_ORDER = tuple(lineage.key for lineage in LINEAGES)
LINEAGE_MAXIMA = tuple(lineage.maximum for lineage in LINEAGES)
LINEAGE_FOUNDERS = MappingProxyType({lineage.key: lineage.founder for lineage in LINEAGES})
# The lineage the training range is stated by, and where that range ends.
RANGE_LINEAGE = "A"
TRAINING_RANGE = MappingProxyType({RANGE_LINEAGE: LINEAGES[0].maximum})

_UNCHECKED = (
    "Where an exact count matters and you have not checked a few of your own images by eye:"
    " it was tried on one real image only."
)

# Split settings were chosen on the simulated validation split by `python -m
# devolearn_web.training split-search`; docs/training.md ("split-search") has the measurements.
CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType(
    {
        "membrane": CatalogueEntry(
            name="membrane",
            title="Cell membrane segmentation",
            task="segmentation",
            page=PageWords(
                heading="Cell membrane segmentation",
                eyebrow="Segmentation · membranes",
                summary=(
                    "Finds the inside of every cell in a membrane-labelled z-slice. Each"
                    " separate blob is one cell: you get the segmentation map over your image,"
                    " the cell count and a centroid map."
                ),
                input_hint="A grayscale membrane z-slice",
                count_noun="cells",
                count_noun_one="cell",
                mask_meaning="inside a cell",
                do_not_trust=(
                    "On anything but a membrane-labelled z-slice: a nuclear marker, a"
                    " whole-embryo projection or a bright-field image.",
                    _UNCHECKED,
                ),
            ),
            figures=("input", "segmentation", "centroids"),
            package=PackageWords(
                name="DevoLearn Web C elegans cell membrane segmentation",
                example="seg_sample.jpg",
                channel="membrane",
                output="Probability that a pixel lies inside a cell (membranes are the gaps).",
                objects="takes each connected region as one cell (membranes are the gaps),"
                " splitting touching cells by a distance-transform watershed",
            ),
            expects_outlines=True,
            # Cells are convex blobs too, and a faint membrane leaves a gap the threshold
            # cannot see. The best validation cell-count error: a window that grows with the
            # cell's thickness gives a big cell's uneven ridge one seed.
            split=SplitSettings(peak_window=2, smoothing_sigma=1.0, size_factor=1.0),
        ),
        "nucleus": CatalogueEntry(
            name="nucleus",
            title="Nucleus segmentation",
            task="segmentation",
            page=PageWords(
                heading="Nucleus segmentation",
                eyebrow="Segmentation · nuclei",
                summary=(
                    "Finds nuclei in a GFP-histone z-slice or projection, splits the ones that"
                    " touch, and counts and measures them: outlines over your image and a"
                    " table of every nucleus."
                ),
                input_hint="A nuclear-marker z-slice or projection",
                count_noun="nuclei",
                count_noun_one="nucleus",
                mask_meaning="nucleus",
                do_not_trust=(
                    "In crowded projections of late embryos, where nuclei a few pixels wide"
                    " merge or are dropped.",
                    "For small, dim nuclei the slice cuts near their top or bottom: they are"
                    " often missed.",
                    _UNCHECKED,
                ),
            ),
            figures=("input", "outlines"),
            package=PackageWords(
                name="DevoLearn Web C elegans nucleus segmentation",
                example="embryo_sample.png",
                channel="nuclei",
                output="Probability that a pixel belongs to a nucleus.",
                objects="splits touching nuclei (distance transform and watershed)",
            ),
            assembles_nuclei=True,
            sizes_by_whole_blobs=True,
            # The best validation SEG: a strong probability weight lets the network's dip
            # between crowded nuclei guide the cut; dropping pieces under 11 px removes dim
            # out-of-focus specks.
            split=SplitSettings(
                peak_window=2,
                smoothing_sigma=1.0,
                size_factor=0.0,
                probability_weight=16.0,
                min_split_area=11,
            ),
        ),
        "lineage": CatalogueEntry(
            name="lineage",
            title="Lineage population",
            task="lineage",
            page=PageWords(
                heading="Lineage populations",
                eyebrow="Regression · founder lineages",
                summary=(
                    "Estimates how many cells each founder lineage (A = AB, E, M = MS, P, C, D,"
                    " Z = Z2/Z3) holds in a whole-embryo image, and warns"
                    " when the embryo is older than the ones the model learned from."
                ),
                input_hint="A whole-embryo image",
                count_noun="cells in all",
                count_noun_one="cell in all",
                do_not_trust=(
                    f"Past {RANGE_LINEAGE} = {TRAINING_RANGE[RANGE_LINEAGE]} cells (the page"
                    " warns): the counts stop rising, so an older embryo reads too young.",
                    "On an image with no embryo, several embryos or only part of one.",
                    "As exact counts of cells hidden behind others: it reads a 2D image of a 3D"
                    " embryo.",
                ),
            ),
            figures=("input", "populations"),
            package=PackageWords(
                name="DevoLearn Web C elegans lineage populations",
                example="embryo_sample.png",
                channel="nuclei",
                output=f"Cells per founder lineage {', '.join(LINEAGE_ORDER)}, before the card's"
                " calibration.",
            ),
            lineages=LINEAGES,
            training_range=TRAINING_RANGE,
        ),
    }
)
MODEL_NAMES: tuple[str, ...] = tuple(CATALOGUE)
SEGMENTATION_MODELS: tuple[str, ...] = tuple(n for n, e in CATALOGUE.items() if e.is_segmentation)
LINEAGE_MODELS: tuple[str, ...] = tuple(n for n, e in CATALOGUE.items() if e.task == "lineage")
# The models whose objects are nuclei, so their stacks can be assembled in 3D and tracked.
NUCLEI_MODELS: tuple[str, ...] = tuple(n for n, e in CATALOGUE.items() if e.assembles_nuclei)
FIGURE_ORDER: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: model.figures for name, model in CATALOGUE.items()}
)


def entry(name: str) -> CatalogueEntry:
    """The catalogue entry of a model; an unknown name is an UnknownModel listing the models."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        raise UnknownModel(unknown_model_sentence(name)) from None


def unknown_model_sentence(name: object) -> str:
    """The sentence for a model name the catalogue lacks, listing the valid names."""
    return f"There is no model called '{name}'. The models are: {', '.join(MODEL_NAMES)}."


def route_names() -> str:
    """The models as the arguments of Werkzeug's `any` converter: `membrane, nucleus, lineage`."""
    return ", ".join(MODEL_NAMES)


def training_range_sentence(relation: str = "=") -> str:
    """Where the lineage training data ends, as a page says it: `A = 250`, `A > 250`..."""
    return f"{RANGE_LINEAGE} {relation} {TRAINING_RANGE[RANGE_LINEAGE]}"
