"""Nuclear GFP images: Fluo-N3DH-CE-like z-stacks and embryo_sample.png-like projections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu

from devolearn_web.training.simulator.embryo import Embryo
from devolearn_web.training.simulator.nuclei import Nuclei, nuclei_at
from devolearn_web.training.simulator.optics import (
    keep_largest_piece_per_label,
    poisson_gaussian,
    remove_small_labels,
    separate_touching_labels,
    smooth_noise,
    to_uint,
)
from devolearn_web.training.simulator.view import View, random_view

# Fluo-N3DH-CE: 0.09 um pixels and 1 um slices over 35 x 512 x 708; the embryo fills ~70% of
# the width. Other shapes keep that framing.
STACK_FILL_RANGE = (0.62, 0.78)
PROJECTION_FILL_RANGE = (0.62, 0.82)
MIN_PROJECTED_LABEL_PIXELS = 4
# Real recordings hold nuclei up to ten times dimmer than their neighbours (uneven expression,
# scattering); an uneven look scales each cell by its own log-uniform factor down to this.
DIMMEST_NUCLEUS = 0.1
_STREAM_CELL_DIMMING = 7
# A cap piece this small is not counted by the evaluation at the working scale anyway.
MIN_CAP_PIXELS = 20
# Seen as an eye sees a slice, through its noise: thresholding the raw pixels leaves speckle.
CAP_SMOOTHING_PX = 1.5


@dataclass(frozen=True)
class NucleusLook:
    """Per-image imaging parameters, drawn within ranges seen in real recordings."""

    photons: float  # expected photon count of a fully bright pixel
    read_noise: float  # in photons
    background: float  # dark level relative to a bright nucleus
    cytoplasm: float  # autofluorescence inside the embryo relative to a bright nucleus
    texture: float  # chromatin texture contrast
    attenuation_um: float  # depth over which light falls to 1/e
    blur_px: float  # in-focus blur sigma
    depth_blur_px: float  # extra blur sigma at the far side of the embryo
    gamma: float  # non-linear detector response / display contrast
    dimmest: float = 1.0  # the dimmest cell's share of its brightness; 1: all cells alike

    @staticmethod
    def draw(rng: np.random.Generator) -> NucleusLook:
        return NucleusLook(
            photons=float(rng.uniform(15.0, 80.0)),
            read_noise=float(rng.uniform(0.5, 2.5)),
            background=float(rng.uniform(0.0, 0.06)),
            cytoplasm=float(rng.uniform(0.0, 0.08)),
            texture=float(rng.uniform(0.1, 0.3)),
            attenuation_um=float(rng.uniform(35.0, 90.0)),
            blur_px=float(rng.uniform(0.6, 1.6)),
            depth_blur_px=float(rng.uniform(0.5, 2.5)),
            gamma=float(rng.uniform(0.75, 1.25)),
        )


def cell_dimming(embryo: Embryo, ids: np.ndarray, dimmest: float) -> np.ndarray:
    """Each cell's own brightness factor, log-uniform in [dimmest, 1] (all 1 when dimmest is 1).

    The factor belongs to the cell, so it is the same in every slice and time point, and a
    dim nucleus's glow in the slices above and below is as dim as the nucleus."""
    if dimmest >= 1.0:
        return np.ones(len(ids))
    shares = np.random.default_rng((embryo.seed, _STREAM_CELL_DIMMING)).uniform(
        size=len(embryo.brightness)
    )
    return dimmest ** shares[ids]


def _image_geometry(nuclei: Nuclei, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Nucleus centres as (slice, row, col) pixels and long axes in the image frame."""
    return view.to_pixels(nuclei.centres), view.to_image_um(nuclei.axes)


def render_nucleus_stack(
    embryo: Embryo, t: float, view: View, look: NucleusLook, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A z-stack (uint16, (slices, rows, cols)) and its nucleus labels (uint16, cell id + 1)."""
    nuclei = nuclei_at(embryo, t)
    slices, rows, cols = view.shape
    signal = np.zeros(view.shape, dtype=np.float32)
    labels = np.zeros(view.shape, dtype=np.uint16)
    best_rho = np.full(view.shape, np.inf, dtype=np.float32)
    centres_px, axes = _image_geometry(nuclei, view)
    spacing = np.array([view.z_step_um, view.um_per_px, view.um_per_px])
    depth_um = view.to_image_um(nuclei.centres)[:, 2] + embryo.shell_semi_axes[2]
    dimming = cell_dimming(embryo, nuclei.ids, look.dimmest)
    for k in range(len(nuclei.ids)):
        extent = nuclei.long_semi_axis[k] * 1.15 / spacing
        low = np.maximum(np.floor(centres_px[k] - extent).astype(int), 0)
        high = np.minimum(np.ceil(centres_px[k] + extent).astype(int) + 1, view.shape)
        if np.any(high <= low):
            continue
        grid = np.meshgrid(
            *[np.arange(lo, hi) for lo, hi in zip(low, high, strict=True)], indexing="ij"
        )
        # Offsets in um in image (x, y, z) order to match the rotated axis.
        offset_x = (grid[2] - centres_px[k, 2]) * view.um_per_px
        offset_y = (grid[1] - centres_px[k, 1]) * view.um_per_px
        offset_z = (grid[0] - centres_px[k, 0]) * view.z_step_um
        along = offset_x * axes[k, 0] + offset_y * axes[k, 1] + offset_z * axes[k, 2]
        perp2 = offset_x**2 + offset_y**2 + offset_z**2 - along**2
        rho = np.sqrt(
            along**2 / nuclei.long_semi_axis[k] ** 2
            + np.clip(perp2, 0.0, None) / nuclei.short_semi_axis[k] ** 2
        ).astype(np.float32)
        texture = 1.0 + look.texture * smooth_noise(rng, rho.shape, 1.2)
        level = nuclei.brightness[k] * dimming[k] * np.exp(-depth_um[k] / look.attenuation_um)
        intensity = level * np.clip((1.08 - rho) / 0.16, 0.0, 1.0) * texture
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
        signal[box] = np.maximum(signal[box], intensity)
        closer = (rho < 1.0) & (rho < best_rho[box])
        best_rho[box][closer] = rho[closer]
        labels[box][closer] = nuclei.ids[k] + 1
    signal += look.cytoplasm * _inside_shell(embryo, view)
    signal = ndi.gaussian_filter1d(signal, sigma=0.8, axis=0)
    for z in range(slices):
        depth_fraction = z / max(slices - 1, 1)
        sigma = look.blur_px + look.depth_blur_px * depth_fraction
        signal[z] = ndi.gaussian_filter(signal[z], sigma)
    signal = np.clip(signal, 0.0, None) ** look.gamma + look.background
    counts = poisson_gaussian(rng, signal, look.photons, look.read_noise)
    # 12-bit-like range inside 16 bits, as many confocal recordings store it.
    image = to_uint(counts, np.uint16, 0.0, 1.6) // 16
    return image.astype(np.uint16), labels


def label_visible_caps(stack: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels that also mark each nucleus where the next slice shows its light, out of focus.

    The ellipsoid labels a nucleus only in the slices that cut it, which is where its light is
    over half its own peak; the axial blur shows it in the next slice at about a third of that,
    as bright as a nucleus a third as bright as its neighbours, and one slice cannot tell the
    two apart. This convention labels what a slice visibly shows: there the nucleus gets the
    part of its neighbouring footprint brighter than the slice's background (the lower
    threshold of a three-class Otsu, background / out-of-focus light / in-focus nuclei, on the
    slice smoothed against its noise); the image itself is unchanged."""
    out = labels.copy()
    for z in range(len(stack)):
        if not stack[z].any():
            continue
        seen = ndi.gaussian_filter(stack[z].astype(np.float32), CAP_SMOOTHING_PX)
        lit = seen > threshold_multiotsu(seen, classes=3)[0]
        present = set(np.unique(labels[z][labels[z] > 0]).tolist())
        for neighbour in (z - 1, z + 1):
            if not 0 <= neighbour < len(stack):
                continue
            near = labels[neighbour]
            for label in set(np.unique(near[near > 0]).tolist()) - present:
                piece = (near == label) & lit & (out[z] == 0)
                if piece.sum() >= MIN_CAP_PIXELS:
                    out[z][piece] = label
                    present.add(label)
    return out


def _inside_shell(embryo: Embryo, view: View) -> np.ndarray:
    """1.0 inside the eggshell, 0.0 outside (float32, view.shape)."""
    slices = view.shape[0]
    inside = np.zeros(view.shape, dtype=np.float32)
    for z in range(slices):
        points = view.slice_grid_um(z)
        rho2 = np.sum((points / embryo.shell_semi_axes) ** 2, axis=-1)
        inside[z] = rho2 < 1.0
    return inside


def render_nucleus_projection(
    embryo: Embryo, t: float, view: View, look: NucleusLook, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A whole-embryo projection (uint8, (rows, cols)) and its visible-nucleus labels (uint16)."""
    nuclei = nuclei_at(embryo, t)
    _, rows, cols = view.shape
    signal = np.zeros((rows, cols), dtype=np.float32)
    labels = np.zeros((rows, cols), dtype=np.uint16)
    centres_px, axes = _image_geometry(nuclei, view)
    depth_um = view.to_image_um(nuclei.centres)[:, 2] + embryo.shell_semi_axes[2]
    thickness = 2.0 * embryo.shell_semi_axes[2]
    dimming = cell_dimming(embryo, nuclei.ids, look.dimmest)
    # Paint back to front, so that a nearer nucleus covers a farther one in image and labels.
    for k in np.argsort(-depth_um):
        long_px = nuclei.long_semi_axis[k] / view.um_per_px
        short_px = nuclei.short_semi_axis[k] / view.um_per_px
        u = axes[k]
        shape_matrix = short_px**2 * np.eye(3) + (long_px**2 - short_px**2) * np.outer(u, u)
        inverse = np.linalg.inv(shape_matrix[:2, :2])  # projected outline, (x, y) order
        extent = long_px * 1.3 + 2
        r0, c0 = centres_px[k, 1], centres_px[k, 2]
        r_lo, r_hi = max(int(r0 - extent), 0), min(int(r0 + extent) + 2, rows)
        c_lo, c_hi = max(int(c0 - extent), 0), min(int(c0 + extent) + 2, cols)
        if r_hi <= r_lo or c_hi <= c_lo:
            continue
        dy = np.arange(r_lo, r_hi)[:, None] - r0
        dx = np.arange(c_lo, c_hi)[None, :] - c0
        rho = np.sqrt(
            np.clip(
                inverse[0, 0] * dx**2 + 2 * inverse[0, 1] * dx * dy + inverse[1, 1] * dy**2, 0, None
            )
        ).astype(np.float32)
        depth_fraction = float(np.clip(depth_um[k] / thickness, 0.0, 1.0))
        # Farther nuclei are out of focus: softer edges.
        edge = 0.12 + 0.35 * depth_fraction
        alpha = np.clip((1.0 + edge / 2 - rho) / edge, 0.0, 1.0)
        texture = 1.0 + look.texture * smooth_noise(rng, rho.shape, 2.5)
        level = nuclei.brightness[k] * dimming[k] * np.exp(-depth_um[k] / look.attenuation_um)
        box = (slice(r_lo, r_hi), slice(c_lo, c_hi))
        signal[box] = alpha * level * texture + (1.0 - alpha) * signal[box]
        labels[box][rho < 1.0] = nuclei.ids[k] + 1
    signal = ndi.gaussian_filter(signal, 0.5 * look.blur_px + 0.3 * look.depth_blur_px)
    signal = np.clip(signal, 0.0, None) ** look.gamma + 0.3 * look.background
    counts = poisson_gaussian(rng, signal, look.photons, look.read_noise)
    # Bright nuclei land near 170-230 of 255, like the real sample, with some saturation.
    white = (
        float(np.percentile(signal[labels > 0], 80)) * rng.uniform(1.05, 1.35)
        if labels.any()
        else 1.0
    )
    image = to_uint(counts, np.uint8, 0.02 * white, white)
    labels = separate_touching_labels(labels)
    labels = keep_largest_piece_per_label(labels)
    labels = remove_small_labels(labels, MIN_PROJECTED_LABEL_PIXELS)
    return image, labels


def random_stack_view(
    rng: np.random.Generator, embryo: Embryo, shape: tuple[int, int, int]
) -> View:
    """A Fluo-N3DH-CE-like framing of this embryo for a stack of `shape`."""
    return random_view(rng, shape, embryo.shell_semi_axes, STACK_FILL_RANGE)


def random_projection_view(
    rng: np.random.Generator, embryo: Embryo, shape: tuple[int, int]
) -> View:
    """An embryo_sample.png-like framing for a projection of (rows, cols)."""
    return random_view(rng, (1, *shape), embryo.shell_semi_axes, PROJECTION_FILL_RANGE)
