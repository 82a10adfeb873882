"""Membrane slices like 3DMMS / seg_sample.jpg: cell outlines from a power diagram in the shell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from devolearn_web.training.simulator.embryo import Embryo
from devolearn_web.training.simulator.optics import poisson_gaussian, smooth_noise, to_uint
from devolearn_web.training.simulator.view import View, random_view

# seg_sample.jpg: the embryo spans ~65-75% of a 356 px wide slice (about 0.2 um per pixel).
MEMBRANE_FILL_RANGE = (0.68, 0.86)
# A cell is its power region cut by the shell and by a sphere this many times its radius, so
# cells that do not press on the shell or on each other stay rounded.
ROUNDING = 1.4
# Neighbours checked per pixel for the nearest membrane plane.
NEIGHBOURS = 4
# Background kept on each side of a membrane in the labels, in pixels.
LABEL_GAP_PX = 1.0


@dataclass(frozen=True)
class MembraneLook:
    """Per-image imaging parameters for a membrane slice."""

    membrane_width_um: float  # Gaussian half-width of the membrane sheet
    shell_boost: float  # how much brighter the embryo's outer boundary is than inner membranes
    speckle: float  # cytoplasmic speckle level relative to a membrane
    dots: int  # bright vesicle-like dots in the slice
    blur_px: float
    photons: float
    read_noise: float
    gamma: float
    white: float  # display white point relative to a membrane (contrast)

    @staticmethod
    def draw(rng: np.random.Generator) -> MembraneLook:
        return MembraneLook(
            membrane_width_um=float(rng.uniform(0.18, 0.32)),
            shell_boost=float(rng.uniform(1.0, 1.4)),
            speckle=float(rng.uniform(0.15, 0.4)),
            dots=int(rng.integers(0, 12)),
            blur_px=float(rng.uniform(0.5, 1.1)),
            photons=float(rng.uniform(20.0, 80.0)),
            read_noise=float(rng.uniform(0.3, 1.5)),
            gamma=float(rng.uniform(0.8, 1.3)),
            white=float(rng.uniform(0.8, 1.6)),
        )


@dataclass(frozen=True)
class SliceGeometry:
    """Per-pixel geometry of one slice: owning cell id (-1 outside) and membrane distance (um)."""

    owner: np.ndarray  # int64 (rows, cols)
    membrane_distance: np.ndarray  # float64 (rows, cols): to the nearest cell boundary
    in_nucleus: np.ndarray  # bool (rows, cols): inside the owner's nucleus (no cytoplasm signal)


def slice_geometry(embryo: Embryo, t: float, view: View, slice_index: float) -> SliceGeometry:
    """Power-diagram cells clipped to the shell and rounded, evaluated on one slice."""
    snapshot = embryo.snapshot_at(t)
    centres = snapshot.centres.astype(np.float64)
    weights = embryo.radii[snapshot.ids] ** 2
    points = view.slice_grid_um(slice_index).reshape(-1, 3)
    # Lift to 4D so that Euclidean nearest neighbours are power-distance nearest cells:
    # |x - c|^2 - r^2 + W = |(x, 0) - (c, sqrt(W - r^2))|^2.
    top = float(weights.max())
    lifted_cells = np.column_stack([centres, np.sqrt(top - weights)])
    lifted_points = np.column_stack([points, np.zeros(len(points))])
    k = min(NEIGHBOURS, len(centres))
    distance, index = cKDTree(lifted_cells).query(lifted_points, k=k)
    distance = distance.reshape(len(points), k)
    index = index.reshape(len(points), k)
    nearest = index[:, 0]
    power = distance**2  # power distance + W
    if k > 1:
        # Distance from the pixel to the radical plane between its cell and each neighbour.
        separation = np.linalg.norm(centres[index[:, 1:]] - centres[nearest][:, None, :], axis=2)
        to_plane = (power[:, 1:] - power[:, :1]) / (2.0 * np.maximum(separation, 1e-9))
        plane_distance = to_plane.min(axis=1)
    else:
        plane_distance = np.full(len(points), np.inf)
    own_radius = ROUNDING * embryo.radii[snapshot.ids[nearest]]
    sphere_distance = own_radius - np.linalg.norm(points - centres[nearest], axis=1)
    shell_distance = _distance_inside_ellipsoid(points, embryo.shell_semi_axes)
    membrane = np.minimum(np.minimum(plane_distance, sphere_distance), shell_distance)
    owner = np.where(membrane > 0, snapshot.ids[nearest], -1)
    to_centre = np.linalg.norm(points - centres[nearest], axis=1)
    in_nucleus = (owner >= 0) & (to_centre < embryo.nucleus_radii[snapshot.ids[nearest]])
    rows, cols = view.shape[1:]
    return SliceGeometry(
        owner.reshape(rows, cols), membrane.reshape(rows, cols), in_nucleus.reshape(rows, cols)
    )


def _distance_inside_ellipsoid(points: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """Approximate signed distance (um) to an ellipsoid surface, positive inside (first order)."""
    scaled = points / semi_axes
    rho = np.sqrt(np.sum(scaled**2, axis=1))
    gradient = np.linalg.norm(scaled / semi_axes / np.maximum(rho, 1e-9)[:, None], axis=1)
    return (1.0 - rho) / np.maximum(gradient, 1e-9)


def membrane_labels(geometry: SliceGeometry, view: View) -> np.ndarray:
    """Cell interiors (uint16, cell id + 1), with background along every membrane."""
    gap_um = LABEL_GAP_PX * view.um_per_px
    inside = (geometry.owner >= 0) & (geometry.membrane_distance > gap_um)
    return np.where(inside, geometry.owner + 1, 0).astype(np.uint16)


def render_membrane_slice(
    geometry: SliceGeometry, view: View, look: MembraneLook, rng: np.random.Generator
) -> np.ndarray:
    """A membrane image (float32 (rows, cols), ~0..1) of one slice's geometry."""
    inside = geometry.owner >= 0
    distance = np.abs(geometry.membrane_distance)
    sheet = np.exp(-((distance / look.membrane_width_um) ** 2)).astype(np.float32)
    # The embryo's outer boundary: the pixel's membrane distance is also its shell distance.
    outer = _outer_boundary(geometry)
    signal = sheet * np.where(outer, look.shell_boost, 1.0).astype(np.float32)
    # Spiky, grainy membranes (seg_sample.jpg): modulate the sheet with fine noise.
    signal *= np.clip(1.0 + 0.25 * smooth_noise(rng, signal.shape, 1.5), 0.3, None)
    speckle = look.speckle * rng.gamma(1.5, 1.0 / 1.5, size=signal.shape).astype(np.float32)
    speckle *= np.clip(1.0 + 0.6 * smooth_noise(rng, signal.shape, 6.0), 0.0, None)
    # The nucleus excludes the cytoplasmic background: a dark hole in each cell (seg_sample.jpg).
    speckle *= np.where(geometry.in_nucleus, 0.25, 1.0).astype(np.float32)
    signal += np.where(inside, speckle, 0.0).astype(np.float32)
    _add_dots(signal, inside, look.dots, rng)
    signal = ndi.gaussian_filter(signal, look.blur_px)
    signal = np.clip(signal, 0.0, None) ** look.gamma
    counts = poisson_gaussian(rng, signal, look.photons, look.read_noise)
    # Real recordings clip the dark background to zero: set the black point above read noise.
    black = 2.5 * look.read_noise / look.photons
    return np.clip(counts - black, 0.0, None) / look.white


def _outer_boundary(geometry: SliceGeometry) -> np.ndarray:
    """Pixels nearer to the outside of the embryo than to any inner membrane (bool)."""
    outside = geometry.owner < 0
    if not outside.any():
        return np.zeros_like(outside)
    distance_to_outside = ndi.distance_transform_edt(~outside)
    return distance_to_outside < 4


def _add_dots(signal: np.ndarray, inside: np.ndarray, count: int, rng: np.random.Generator) -> None:
    rows, cols = np.nonzero(inside)
    if rows.size == 0 or count == 0:
        return
    picks = rng.integers(0, rows.size, size=count)
    signal[rows[picks], cols[picks]] += rng.uniform(2.0, 6.0, size=count).astype(np.float32)


def membrane_to_uint16(image: np.ndarray) -> np.ndarray:
    """A rendered membrane slice (float32, ~0..1) as 16-bit counts."""
    return to_uint(image, np.uint16, 0.0, 1.0)


def random_membrane_view(
    rng: np.random.Generator, embryo: Embryo, shape: tuple[int, int, int]
) -> View:
    """A 3DMMS-like framing of this embryo for a stack of `shape`."""
    return random_view(rng, shape, embryo.shell_semi_axes, MEMBRANE_FILL_RANGE, (0.8, 0.95))
