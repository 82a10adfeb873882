"""Nuclei at one time: position, size, mitotic elongation and brightness of every living cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devolearn_web.training.simulator.embryo import MITOSIS_MINUTES, Embryo

# At the end of mitosis the nucleus is this many times longer than round (volume conserved).
MAX_ELONGATION = 1.9
# Newly formed daughter nuclei are small and bright, then swell over a few minutes.
REFORMING_MINUTES = 3.0
NEWBORN_SIZE = 0.7


@dataclass(frozen=True)
class Nuclei:
    """Nuclei of the living cells: ids (int32 (n,)), centres (float64 (n, 3) um, embryo frame),
    unit long axes (float64 (n, 3)), long and short semi-axes (float64 (n,) um), brightness."""

    ids: np.ndarray
    centres: np.ndarray
    axes: np.ndarray
    long_semi_axis: np.ndarray
    short_semi_axis: np.ndarray
    brightness: np.ndarray


def nuclei_at(embryo: Embryo, t: float) -> Nuclei:
    """The nuclei at the last simulated minute at or before t."""
    snapshot = embryo.snapshot_at(t)
    ids = snapshot.ids
    minutes = snapshot.minutes
    radius = embryo.nucleus_radii[ids].copy()
    brightness = embryo.brightness[ids].copy()
    to_division = embryo.cells.division[ids] - minutes
    progress = np.clip(1.0 - to_division / MITOSIS_MINUTES, 0.0, 1.0)
    elongation = 1.0 + (MAX_ELONGATION - 1.0) * progress
    # Condensed chromosomes are brighter than interphase chromatin.
    brightness *= 1.0 + 0.5 * progress
    age = minutes - embryo.cells.birth[ids]
    reforming = np.clip(1.0 - age / REFORMING_MINUTES, 0.0, 1.0) * (ids > 0)
    radius *= 1.0 - (1.0 - NEWBORN_SIZE) * reforming
    brightness *= 1.0 + 0.3 * reforming
    return Nuclei(
        ids=ids,
        centres=snapshot.centres.astype(np.float64),
        axes=embryo.division_axes[ids],
        long_semi_axis=radius * elongation,
        short_semi_axis=radius / np.sqrt(elongation),
        brightness=brightness,
    )
