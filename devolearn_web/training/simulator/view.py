"""Where the microscope looks from: embryo orientation, pixel size and framing of an image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """Maps embryo coordinates (um) to image pixels; image axes (z = depth, y = row, x = col)."""

    rotation: np.ndarray  # float64 (3, 3): embryo frame (x, y, z) -> image frame (x, y, z)
    um_per_px: float  # in-plane pixel size
    z_step_um: float  # distance between slices (unused by projections)
    shape: tuple[int, int, int]  # (slices, rows, cols); slices = 1 for a projection
    centre_px: tuple[float, float, float]  # (slice, row, col) of the embryo's centre

    def to_image_um(self, points: np.ndarray) -> np.ndarray:
        """Embryo-frame points (float, (n, 3) um) in the image frame (um, centred on the embryo)."""
        return points @ self.rotation.T

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Embryo-frame points (float, (n, 3) um) as (slice, row, col) coordinates, float64."""
        image = self.to_image_um(points)
        return np.stack(
            [
                self.centre_px[0] + image[:, 2] / self.z_step_um,
                self.centre_px[1] + image[:, 1] / self.um_per_px,
                self.centre_px[2] + image[:, 0] / self.um_per_px,
            ],
            axis=1,
        )

    def slice_grid_um(self, slice_index: float) -> np.ndarray:
        """Embryo-frame position (float64, (rows, cols, 3) um) of every pixel of one slice."""
        _, rows, cols = self.shape
        x = (np.arange(cols) - self.centre_px[2]) * self.um_per_px
        y = (np.arange(rows) - self.centre_px[1]) * self.um_per_px
        z = (slice_index - self.centre_px[0]) * self.z_step_um
        image = np.empty((rows, cols, 3))
        image[..., 0] = x[None, :]
        image[..., 1] = y[:, None]
        image[..., 2] = z
        return image @ self.rotation  # inverse of a rotation is its transpose


def random_rotation(rng: np.random.Generator, max_in_plane_degrees: float = 12.0) -> np.ndarray:
    """Embryo on its side: any roll about its long axis, random flips, a small in-plane turn."""
    roll = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(roll), np.sin(roll)
    roll_matrix = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    # Anterior may face left or right; a mirror image is still a valid embryo image.
    flip = np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0]), 1.0])
    tilt = np.deg2rad(rng.uniform(-6.0, 6.0))
    ct, st = np.cos(tilt), np.sin(tilt)
    tilt_matrix = np.array([[ct, 0.0, -st], [0.0, 1.0, 0.0], [st, 0.0, ct]])
    turn = np.deg2rad(rng.uniform(-max_in_plane_degrees, max_in_plane_degrees))
    cz, sz = np.cos(turn), np.sin(turn)
    turn_matrix = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return turn_matrix @ tilt_matrix @ flip @ roll_matrix


def random_view(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    shell_semi_axes: np.ndarray,
    fill_range: tuple[float, float],
    depth_fill_range: tuple[float, float] = (0.8, 0.92),
    rotation: np.ndarray | None = None,
) -> View:
    """A view whose embryo length spans `fill_range` of the width and thickness of the slices."""
    slices, rows, cols = shape
    fill = rng.uniform(*fill_range)
    um_per_px = 2.0 * shell_semi_axes[0] / (fill * cols)
    # Never let the embryo overflow the rows (a wide embryo in a short frame).
    um_per_px = max(um_per_px, 2.0 * shell_semi_axes[1] / (0.92 * rows))
    z_step_um = 2.0 * shell_semi_axes[2] / (rng.uniform(*depth_fill_range) * max(slices, 1))
    spare_cols = max(0.0, cols / 2 - shell_semi_axes[0] / um_per_px)
    spare_rows = max(0.0, rows / 2 - shell_semi_axes[1] / um_per_px)
    centre = (
        (slices - 1) / 2.0,
        rows / 2.0 + rng.uniform(-0.4, 0.4) * spare_rows,
        cols / 2.0 + rng.uniform(-0.4, 0.4) * spare_cols,
    )
    return View(
        rotation=rotation if rotation is not None else random_rotation(rng),
        um_per_px=float(um_per_px),
        z_step_um=float(z_step_um),
        shape=shape,
        centre_px=centre,
    )
