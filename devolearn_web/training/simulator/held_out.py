"""Held-out images of the simulated test embryos at their usual framing, with their truth: for
checks of the shipped models (framing invariance, the bench's scale sweep)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np

from devolearn_web.catalogue import entry
from devolearn_web.segmentation import MIN_OBJECT_AREA_AT_MODEL_SCALE
from devolearn_web.training.images import resize_labels, separate_touching_labels
from devolearn_web.training.metrics import count_objects
from devolearn_web.training.simulator.datasets import (
    MEMBRANE_FIRST_CELLS,
    MEMBRANE_LAST_CELLS,
    spread_times,
)
from devolearn_web.training.simulator.embryo import A_TARGET, simulate_embryo
from devolearn_web.training.simulator.render_membrane import (
    MembraneLook,
    membrane_labels,
    random_membrane_view,
    render_membrane_slice,
    slice_geometry,
)
from devolearn_web.training.simulator.render_nucleus import (
    DIMMEST_NUCLEUS,
    NucleusLook,
    label_visible_caps,
    random_projection_view,
    random_stack_view,
    render_nucleus_projection,
    render_nucleus_stack,
)

TEST_SEEDS = (2000, 2001)
# Whole-embryo projections are judged up to this many cells: later, nuclei lie behind one
# another so densely that one projection hides many of them (the shipped nucleus file found
# 111 of 286 labelled in a 286-nucleus validation projection, and all of 2 to 46).
PROJECTION_LAST_CELLS = 100


def learned_visible_caps(card: Mapping) -> bool:
    """Whether a nucleus model learned slices labelled with their out-of-focus light, and so is
    judged by such labels (`simulate --label-visible-caps`)."""
    return bool((card.get("training_data") or {}).get("visible_caps"))


def held_out_images(
    model: str,
    count: int,
    stream: int,
    visible_caps: bool = False,
    seeds: Sequence[int] = TEST_SEEDS,
) -> Iterator[tuple[np.ndarray, object]]:
    """(uint8 image, truth) pairs: a count for segmentation, populations for lineage.

    `count` images over the test seeds, from the 4-cell stage (earlier, one or two nuclei are
    not an embryo's outline) to A = 250, or over the 4-350 cells the membrane data covers;
    `stream` picks the random views, so each caller keeps its own set; `visible_caps` counts
    nucleus slices as `simulate --label-visible-caps` labels them; `seeds`, a part of the test
    seeds, yields the same images of those seeds alone."""
    samples = held_out_samples(model, count, stream, visible_caps=visible_caps, seeds=seeds)
    for image, truth, _ in samples:
        yield image, truth


def held_out_samples(
    model: str,
    count: int,
    stream: int,
    uneven: bool = False,
    visible_caps: bool = False,
    seeds: Sequence[int] = TEST_SEEDS,
) -> Iterator[tuple[np.ndarray, object, np.ndarray | None]]:
    """held_out_images' pairs with the image's label map (None for lineage).

    `uneven` renders the same nucleus slices with each nucleus at its own brightness, down to
    a tenth (`render_nucleus.cell_dimming`); `visible_caps` labels nucleus slices with the
    out-of-focus light they show, as `render_nucleus.label_visible_caps` does."""
    per_seed = max(1, count // 2)
    for seed in seeds:
        embryo = simulate_embryo(seed)
        rng = np.random.default_rng((seed, stream))
        start = embryo.time_when_a_reaches(2)
        end = embryo.last_grid_time_with_a_at_most(A_TARGET)
        if model == "membrane":
            start = embryo.grid_time_with_total(MEMBRANE_FIRST_CELLS)
            end = embryo.grid_time_with_total(MEMBRANE_LAST_CELLS)
        for minutes in spread_times(embryo, start, end, per_seed):
            if entry(model).task == "lineage":
                view = random_projection_view(rng, embryo, (315, 585))
                look = NucleusLook.draw(rng)
                image, _ = render_nucleus_projection(embryo, minutes, view, look, rng)
                yield image, embryo.populations_at(minutes), None
            elif model == "nucleus":
                view = random_stack_view(rng, embryo, (35, 512, 708))
                look = NucleusLook.draw(rng)
                noise = copy.deepcopy(rng)
                # Rendered even first: the draws after it (the slice, the next views) depend on
                # how much noise the even render took, so both sets hold the same slices.
                stack, labels = render_nucleus_stack(embryo, minutes, view, look, rng)
                z = int(rng.integers(12, 23))
                if uneven:
                    dim = replace(look, dimmest=DIMMEST_NUCLEUS)
                    stack, _ = render_nucleus_stack(embryo, minutes, view, dim, noise)
                shown = labels[z]
                if visible_caps:  # the slices either side are all the rule looks at
                    shown = label_visible_caps(stack[z - 1 : z + 2], labels[z - 1 : z + 2])[1]
                yield to_8_bit(stack[z]), evaluated_count(shown), shown
            else:
                view = random_membrane_view(rng, embryo, (40, 256, 356))
                geometry = slice_geometry(embryo, minutes, view, float(rng.integers(14, 26)))
                image = render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng)
                labels = membrane_labels(geometry, view)
                yield to_8_bit(image), evaluated_count(labels), labels


def held_out_projections(
    count: int, stream: int, uneven: bool = False, seeds: Sequence[int] = TEST_SEEDS
) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
    """(uint8 image, nucleus count, labels) of whole-embryo nucleus projections of the test
    embryos from the 4-cell stage to PROJECTION_LAST_CELLS cells; `uneven` renders the same
    projections with each nucleus at its own brightness, down to a tenth (a projection's
    nuclei are all in focus, so a dim one is a nucleus, never another's out-of-focus light)."""
    per_seed = max(1, count // 2)
    for seed in seeds:
        embryo = simulate_embryo(seed)
        rng = np.random.default_rng((seed, stream))
        start = embryo.time_when_a_reaches(2)
        end = embryo.grid_time_with_total(PROJECTION_LAST_CELLS)
        for minutes in spread_times(embryo, start, end, per_seed):
            view = random_projection_view(rng, embryo, (512, 708))
            look = NucleusLook.draw(rng)
            noise = copy.deepcopy(rng)
            image, labels = render_nucleus_projection(embryo, minutes, view, look, rng)
            if uneven:  # the same draws as the even render: the same projection, dimmed
                dim = replace(look, dimmest=DIMMEST_NUCLEUS)
                image, _ = render_nucleus_projection(embryo, minutes, view, dim, noise)
            yield to_8_bit(image), evaluated_count(labels), labels


def evaluated_count(labels: np.ndarray) -> int:
    """The objects of a label map as the evaluation counts them: on the 256x256 grid, touching
    objects kept apart, specks left out."""
    small = separate_touching_labels(resize_labels(labels.astype(np.int32), 256))
    return count_objects(small, MIN_OBJECT_AREA_AT_MODEL_SCALE)


def to_8_bit(image: np.ndarray) -> np.ndarray:
    """An image stretched from its minimum to its maximum as uint8."""
    image = image.astype(np.float32)
    span = float(image.max() - image.min()) or 1.0
    return np.rint((image - image.min()) / span * 255).astype(np.uint8)
