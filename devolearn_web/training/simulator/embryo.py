"""The digital embryo: lineage, cell geometry and nuclei over the whole simulated development."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devolearn_web.catalogue import TRAINING_RANGE
from devolearn_web.training.simulator.lineage import (
    CellTable,
    build_lineage,
    count_by_lineage,
    time_when_lineage_reaches,
)
from devolearn_web.training.simulator.mechanics import (
    cell_radii,
    choose_division_axes,
    simulate_positions,
)

SHELL_SEMI_AXES_UM = np.array([25.0, 15.0, 15.0])  # a 50 x 30 x 30 um ellipsoid
SHELL_SPREAD = 0.04
# Development is simulated until lineage A holds this many cells, and a little past it.
A_TARGET = TRAINING_RANGE["A"]
MINUTES_PAST_TARGET = 10.0
# A generous bound on the simulated span; A reaches 250 after about 3.5-4 hours.
MAX_MINUTES = 330.0
# Nucleus radius as a fraction of its cell's radius, drawn per cell.
NUCLEUS_FRACTION_RANGE = (0.42, 0.5)
MITOSIS_MINUTES = 4.0


@dataclass(frozen=True)
class Snapshot:
    """The embryo at one time: alive cell ids (int32 (n,)) and centres (float32 (n, 3) um)."""

    minutes: float
    ids: np.ndarray
    centres: np.ndarray


@dataclass
class Embryo:
    """One simulated embryo: a lineage tree, per-cell sizes and positions once a minute."""

    seed: int
    cells: CellTable
    shell_semi_axes: np.ndarray  # float64 (3,) um, x = anterior-posterior
    radii: np.ndarray  # float64 (n_cells,) um
    nucleus_radii: np.ndarray  # float64 (n_cells,) um
    division_axes: np.ndarray  # float64 (n_cells, 3) unit vectors
    brightness: np.ndarray  # float64 (n_cells,), relative nuclear GFP level
    times: np.ndarray  # float64 (n_times,) minutes since the 1-cell stage began
    alive_ids: list[np.ndarray]
    centres: list[np.ndarray]

    def populations_at(self, t: float) -> dict[str, int]:
        """Living cells per founder lineage at minute t, keys ordered A, E, M, P, C, D, Z."""
        return count_by_lineage(self.cells.letters, self.cells.alive_at(t))

    def time_when_a_reaches(self, n: int) -> float:
        """The first minute at which lineage A holds at least n cells (inf if it never does)."""
        return time_when_lineage_reaches(self.cells, "A", n)

    def snapshot_at(self, t: float) -> Snapshot:
        """The state at the last simulated minute at or before t."""
        index = int(
            np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 1)
        )
        return Snapshot(float(self.times[index]), self.alive_ids[index], self.centres[index])

    def time_index(self, t: float) -> int:
        """Index into `times` of the last simulated minute at or before t."""
        return int(
            np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 1)
        )

    def grid_time_with_total(self, n: int) -> float:
        """The first simulated minute with at least n living cells in all (last minute if never)."""
        for t in self.times:
            if len(self.cells.alive_at(t)) >= n:
                return float(t)
        return float(self.times[-1])

    def last_grid_time_with_a_at_most(self, n: int) -> float:
        """The last simulated minute at which lineage A holds at most n cells."""
        limit = self.time_when_a_reaches(n + 1)
        return float(self.times[self.times < limit][-1])


def simulate_embryo(seed: int) -> Embryo:
    """Simulate one embryo from the 1-cell stage until lineage A has a little over 250 cells."""
    rng = np.random.default_rng(seed)
    shell = SHELL_SEMI_AXES_UM * np.exp(rng.normal(0.0, SHELL_SPREAD, size=3))
    shell[2] = shell[1] = 0.5 * (shell[1] + shell[2])  # round cross-section
    cells = build_lineage(rng, MAX_MINUTES)
    end = min(time_when_lineage_reaches(cells, "A", A_TARGET) + MINUTES_PAST_TARGET, MAX_MINUTES)
    times = np.arange(0.0, np.floor(end) + 1.0)
    radii = cell_radii(cells.generation, shell)
    axes = choose_division_axes(cells, rng)
    nucleus_radii = radii * rng.uniform(*NUCLEUS_FRACTION_RANGE, size=len(cells))
    brightness = np.exp(rng.normal(0.0, 0.15, size=len(cells)))
    alive_ids, centres = simulate_positions(cells, radii, axes, shell, times, rng)
    return Embryo(
        seed=seed,
        cells=cells,
        shell_semi_axes=shell,
        radii=radii,
        nucleus_radii=nucleus_radii,
        division_axes=axes,
        brightness=brightness,
        times=times,
        alive_ids=alive_ids,
        centres=centres,
    )
