"""Cell positions over time: daughters placed along a division axis, then packed in the shell."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from devolearn_web.training.simulator.lineage import CellTable

# Spheres whose volumes add up to the shell's cannot all fit without overlap (random close
# packing fills ~64%), so neighbours settle at ~0.86 of their summed radii: (0.64)**(1/3).
CONTACT_FRACTION = 0.86
RELAXATION_STEPS_PER_MINUTE = 4
RELAXATION_RATE = 0.5
# Daughters start this many mother radii from the mother's centre, on either side.
DAUGHTER_OFFSET = 0.5
# Cells may not push their centre closer to the shell than this fraction of their radius.
WALL_MARGIN = 0.75


def cell_radii(generation: np.ndarray, shell_semi_axes: np.ndarray) -> np.ndarray:
    """Radius in um (float64) of each cell: volume halves at every division."""
    shell_volume = 4.0 / 3.0 * np.pi * float(np.prod(shell_semi_axes))
    volume = shell_volume * 0.5 ** generation.astype(np.float64)
    return (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)


def choose_division_axes(cells: CellTable, rng: np.random.Generator) -> np.ndarray:
    """Unit division axis (float64 (n, 3)) per cell; most run along the long axis."""
    axes = rng.normal(size=(len(cells), 3))
    # C. elegans spindles mostly align with the anterior-posterior (x) axis.
    axes[:, 0] *= 1.8
    early = cells.generation <= 1
    axes[early] = np.array([1.0, 0.0, 0.0]) + 0.15 * rng.normal(size=(int(early.sum()), 3))
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def simulate_positions(
    cells: CellTable,
    radii: np.ndarray,
    axes: np.ndarray,
    shell_semi_axes: np.ndarray,
    times: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Alive ids (int32) and centres (float32, (n, 3) um) at every time in `times` (minutes)."""
    position = np.zeros((len(cells), 3))
    alive = np.zeros(len(cells), dtype=bool)
    alive[0] = True
    ids_per_time: list[np.ndarray] = []
    positions_per_time: list[np.ndarray] = []
    born_order = np.argsort(cells.birth, kind="stable")
    next_birth = 1  # index into born_order; P0 is already placed
    for t in times:
        while next_birth < len(born_order) and cells.birth[born_order[next_birth]] <= t:
            child = born_order[next_birth]
            mother = cells.parent[child]
            sign = -1.0 if cells.daughters[mother, 0] == child else 1.0
            jitter = 0.05 * radii[mother] * rng.normal(size=3)
            position[child] = (
                position[mother] + sign * DAUGHTER_OFFSET * radii[mother] * axes[mother] + jitter
            )
            alive[child] = True
            alive[mother] = False
            next_birth += 1
        ids = np.flatnonzero(alive)
        points = position[ids]
        for _ in range(RELAXATION_STEPS_PER_MINUTE):
            points = _relax(points, radii[ids], shell_semi_axes)
        position[ids] = points
        ids_per_time.append(ids.astype(np.int32))
        positions_per_time.append(points.astype(np.float32))
    return ids_per_time, positions_per_time


def _relax(points: np.ndarray, radii: np.ndarray, shell_semi_axes: np.ndarray) -> np.ndarray:
    """One step of pairwise overlap repulsion followed by confinement to the shell."""
    if len(points) > 1:
        tree = cKDTree(points)
        pairs = tree.query_pairs(2.0 * CONTACT_FRACTION * float(radii.max()), output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            delta = points[j] - points[i]
            distance = np.linalg.norm(delta, axis=1)
            contact = CONTACT_FRACTION * (radii[i] + radii[j])
            overlap = np.clip(contact - distance, 0.0, None)
            direction = delta / np.maximum(distance, 1e-6)[:, None]
            # Split the push by size so that a big cell moves less than a small one.
            weight_i = radii[j] ** 3 / (radii[i] ** 3 + radii[j] ** 3)
            push = RELAXATION_RATE * overlap
            shift = np.zeros_like(points)
            np.add.at(shift, i, -(push * weight_i)[:, None] * direction)
            np.add.at(shift, j, (push * (1.0 - weight_i))[:, None] * direction)
            points = points + shift
    return confine_to_shell(points, radii, shell_semi_axes)


def confine_to_shell(
    points: np.ndarray, radii: np.ndarray, shell_semi_axes: np.ndarray
) -> np.ndarray:
    """Pull centres (float64, (n, 3) um) back inside the shell shrunk by a margin per cell."""
    inner = np.maximum(shell_semi_axes[None, :] - WALL_MARGIN * radii[:, None], 0.5)
    rho = np.sqrt(np.sum((points / inner) ** 2, axis=1))
    scale = np.where(rho > 1.0, 1.0 / np.maximum(rho, 1e-9), 1.0)
    return points * scale[:, None]
