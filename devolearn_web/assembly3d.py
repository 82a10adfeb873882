"""Per-slice nuclei of a z-stack linked into 3D nuclei: one label per nucleus through z.

Decisions:
- Two slices' objects link when they overlap in the image plane by at least MIN_OVERLAP of the
  smaller one; each object links to at most one object above and one below (the largest overlap
  first), so two nuclei side by side never merge through a third.
- A link may skip slices where a nucleus was missed, up to LINK_REACH_UM along z (at least the
  next slice): thin z steps bridge a missed slice, 1 um steps (Fluo-N3DH-CE) do not.
- Two nuclei stacked along z overlap in every slice; a chain whose area falls to a dip and
  rises again by SPLIT_RISE is cut at the dip (a single nucleus's sections grow, then shrink).
- Pure numpy over label arrays (no Flask), so a queued job can call it as the request does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

# A nucleus moves less than this along z between the slices one link may join.
LINK_REACH_UM = 1.5
# Fluo-N3DH-CE's z step, assumed when neither the file nor the request gives one.
DEFAULT_Z_STEP_UM = 1.0
MIN_OVERLAP = 0.3
# A section this much larger (relative) than the dip below it starts a new nucleus.
SPLIT_RISE = 1.6


@dataclass(frozen=True)
class Assembly:
    """3D labels (uint32 ZxHxW, 0 = background) and, per slice, old label -> 3D label."""

    labels: np.ndarray
    lookups: tuple[np.ndarray, ...]
    count: int


def slice_reach(z_step_um: float) -> int:
    """How many slices apart two sections of one nucleus may be linked (at least 1)."""
    return max(1, int(LINK_REACH_UM // z_step_um))


def overlaps(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower label, upper label, shared pixels) for every pair of objects that overlap."""
    both = (lower > 0) & (upper > 0)
    if not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    width = int(upper.max()) + 1
    codes = lower[both].astype(np.int64) * width + upper[both].astype(np.int64)
    pairs, counts = np.unique(codes, return_counts=True)
    return pairs // width, pairs % width, counts


def assemble_3d(slices: Sequence[np.ndarray], z_step_um: float = DEFAULT_Z_STEP_UM) -> Assembly:
    """Link per-slice labels (each HxW, labels 1..n, 0 background) into 3D labels (ZxHxW)."""
    reach = slice_reach(z_step_um)
    areas = [np.bincount(np.asarray(s).ravel()) for s in slices]
    # Nodes are (slice, label); `below[z][label]` is the linked node's (slice, label) or None.
    below: list[dict[int, tuple[int, int]]] = [{} for _ in slices]
    above: list[dict[int, tuple[int, int]]] = [{} for _ in slices]
    # Neighbouring slices first, so a skip link only bridges slices where a section is missing.
    for step in range(1, reach + 1):
        for z in range(len(slices) - step):
            _link(slices, areas, above, below, z, z + step)
    chains = _chains(slices, areas, above, below)
    lookups = [np.zeros(len(area), dtype=np.uint32) for area in areas]
    for number, chain in enumerate(chains, start=1):
        for z, label in chain:
            lookups[z][label] = number
    labels = np.stack([lookup[np.asarray(s)] for lookup, s in zip(lookups, slices, strict=True)])
    return Assembly(labels, tuple(lookups), len(chains))


def _link(slices, areas, above, below, z_low: int, z_high: int) -> None:
    """Join free objects of slice z_low to free objects of slice z_high, largest overlap first."""
    low_labels, high_labels, shared = overlaps(
        np.asarray(slices[z_low]), np.asarray(slices[z_high])
    )
    smaller = (
        np.minimum(areas[z_low][low_labels], areas[z_high][high_labels]) if shared.size else []
    )
    for index in np.argsort(-shared, kind="stable"):
        low, high = int(low_labels[index]), int(high_labels[index])
        if shared[index] < MIN_OVERLAP * smaller[index]:
            continue
        if low in above[z_low] or high in below[z_high]:
            continue
        above[z_low][low] = (z_high, high)
        below[z_high][high] = (z_low, low)


def _chains(slices, areas, above, below) -> list[list[tuple[int, int]]]:
    """Linked nodes as chains bottom to top, cut where the sections' area dips and rises."""
    chains = []
    for z in range(len(slices)):
        for label in np.flatnonzero(areas[z][1:]) + 1:
            if int(label) in below[z]:
                continue
            node: tuple[int, int] | None = (z, int(label))
            chain = []
            while node is not None:
                chain.append(node)
                node = above[node[0]].get(node[1])
            chains.extend(_split_at_dips(chain, areas))
    return chains


def _split_at_dips(chain: list[tuple[int, int]], areas) -> list[list[tuple[int, int]]]:
    """Cut a chain where its sections shrink to a dip and then grow by SPLIT_RISE again."""
    sizes = [int(areas[z][label]) for z, label in chain]
    pieces, start = [], 0
    for i in range(1, len(chain) - 1):
        if i <= start:
            continue
        dip = sizes[i]
        fell = max(sizes[start:i]) >= SPLIT_RISE * dip
        rises = sizes[i + 1] >= SPLIT_RISE * dip
        if dip < sizes[i - 1] and fell and rises:
            pieces.append(chain[start : i + 1])
            start = i + 1
    pieces.append(chain[start:])
    return pieces


def objects_3d(labels: np.ndarray, voxel_um: tuple[float, float, float] | None = None) -> list:
    """[{label, x, y, z, volume}] per 3D label (pixels, slices, voxels), with x_um, y_um, z_um
    and volume_um3 when the voxel size (z, y, x in um) is known."""
    count = int(labels.max(initial=0))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    # Track ids leave gaps at a time point (nuclei not yet born): only labels present count.
    index = np.flatnonzero(sizes[1:]) + 1
    volumes = sizes[index]
    centres = ndi.center_of_mass(labels > 0, labels, index)
    rows = []
    for label, volume, (z, y, x) in zip(index, volumes, centres, strict=True):
        row = {
            "label": int(label),
            "x": round(float(x), 2),
            "y": round(float(y), 2),
            "z": round(float(z), 2),
            "volume": int(volume),
        }
        if voxel_um is not None:
            dz, dy, dx = voxel_um
            row.update(
                x_um=round(float(x) * dx, 4),
                y_um=round(float(y) * dy, 4),
                z_um=round(float(z) * dz, 4),
                volume_um3=round(float(volume) * dz * dy * dx, 4),
            )
        rows.append(row)
    return rows
