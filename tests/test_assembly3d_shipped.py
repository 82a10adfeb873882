"""Nuclei in 3D with the shipped nucleus model: the whole-embryo count of simulated z-stacks
(seeds never used in training) against the simulator's true 3D nuclei."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from devolearn_web.assembly3d import assemble_3d
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import ScaleRequest
from devolearn_web.stack_pipeline import collect_results
from devolearn_web.stacks import FrameStack
from devolearn_web.training.simulator.embryo import simulate_embryo
from devolearn_web.training.simulator.held_out import TEST_SEEDS
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    View,
    random_stack_view,
    render_nucleus_stack,
)
from tests.conftest import REPOSITORY_ROOT

pytestmark = pytest.mark.slow
# Half the Fluo-N3DH-CE frame (0.18-0.23 um pixels): three stacks run in about 20 s on a CPU.
STACK_SHAPE = (35, 256, 354)
STAGES = (8, 28, 100)
# The 3D count may miss or add this fraction of the true nuclei in any one stack...
TOLERANCE_PER_STACK = 0.35
# ...and this much on average over the stages.
TOLERANCE_MEAN = 0.2


@cache
def registry() -> ModelRegistry:
    return ModelRegistry(REPOSITORY_ROOT / "models")


def simulated_stack(cells: int, seed: int) -> tuple[np.ndarray, np.ndarray, View]:
    """(12-bit stack, true label stack, view) at the first minute with `cells` cells."""
    embryo = simulate_embryo(seed)
    rng = np.random.default_rng((seed, 22, cells))
    view = random_stack_view(rng, embryo, STACK_SHAPE)
    stack, truth = render_nucleus_stack(
        embryo, embryo.grid_time_with_total(cells), view, NucleusLook.draw(rng), rng
    )
    return stack, truth, view


def simulated_counts(cells: int, seed: int) -> tuple[int, int]:
    """(true nuclei, 3D count) for a simulated stack at the first minute with `cells` cells."""
    stack, truth, view = simulated_stack(cells, seed)
    positions = tuple({"z": z} for z in range(stack.shape[0]))
    # 12-bit values stored in 16 bits, as the simulator writes Fluo-N3DH-CE-like stacks.
    frames = FrameStack("stack", stack, positions, {"slider": ["z"]}, scale=1 / 4095)
    scale = ScaleRequest(pixel_size_um=view.um_per_px)  # a calibrated file's pixel size
    results = collect_results(registry(), "nucleus", frames, scale_request=scale)
    assembly = assemble_3d([result.labels for result in results], view.z_step_um)
    return len(np.unique(truth)) - 1, assembly.count


def test_whole_embryo_3d_count_is_close_to_the_true_number_of_nuclei():
    errors = []
    for cells in STAGES:
        true_count, found = simulated_counts(cells, TEST_SEEDS[0])
        error = abs(found - true_count) / true_count
        print(f"{cells}-cell stage: {true_count} true nuclei, 3D count {found}")
        assert error <= TOLERANCE_PER_STACK, (cells, true_count, found)
        errors.append(error)
    assert np.mean(errors) <= TOLERANCE_MEAN, errors
