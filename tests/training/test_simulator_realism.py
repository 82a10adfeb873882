"""Simulated images match the real samples in simple statistics, each within a tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

from devolearn_web.training.simulator import simulate_embryo
from devolearn_web.training.simulator.render_membrane import (
    MembraneLook,
    random_membrane_view,
    render_membrane_slice,
    slice_geometry,
)
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    random_projection_view,
    render_nucleus_projection,
)

SAMPLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
SEEDS = (0, 1, 2)

pytestmark = pytest.mark.skipif(
    not SAMPLES_DIR.is_dir(),
    reason=f"real sample images not found at {SAMPLES_DIR} (../shared/samples from the repo root)",
)


def _normalise_and_find_embryo(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image scaled by its 99.5th percentile, and a filled mask of the embryo (bool)."""
    norm = image.astype(np.float64) / max(float(np.percentile(image, 99.5)), 1e-9)
    smooth = ndi.gaussian_filter(norm, 0.01 * image.shape[1])
    closed = ndi.binary_closing(smooth > 0.08, iterations=int(0.03 * image.shape[1]))
    return norm, ndi.binary_fill_holes(closed)


def projection_statistics(image: np.ndarray) -> dict[str, float]:
    """Percentiles, bright fraction and nucleus size relative to the embryo of a projection."""
    norm, embryo = _normalise_and_find_embryo(image)
    smooth = ndi.gaussian_filter(norm, 0.006 * image.shape[1])
    peaks = peak_local_max(
        smooth, min_distance=max(2, int(0.012 * image.shape[1])), threshold_abs=0.3
    )
    bright = norm > 0.3
    p75, p90 = np.percentile(norm, [75, 90])
    return {
        "p75": float(p75),
        "p90": float(p90),
        "foreground": float(bright.mean()),
        # Side of the mean bright area per nucleus, relative to the embryo's side.
        "nucleus_size": float(np.sqrt(bright.sum() / max(len(peaks), 1) / embryo.sum())),
    }


def membrane_statistics(image: np.ndarray) -> dict[str, float]:
    """Percentile, membrane fraction, embryo fraction and cell size relative to the embryo."""
    norm, embryo = _normalise_and_find_embryo(image)
    membrane = ndi.gaussian_filter(norm, 0.003 * image.shape[1]) > 0.35
    cells, _ = ndi.label(embryo & ~ndi.binary_dilation(membrane))
    areas = np.bincount(cells.ravel())[1:]
    areas = areas[areas > 0.01 * embryo.sum()]
    return {
        "p90": float(np.percentile(norm, 90)),
        "membrane": float(membrane.mean()),
        "embryo": float(embryo.mean()),
        "cell_size": float(np.median(areas) / embryo.sum()) if areas.size else 1.0,
    }


def _median(stats: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.median([s[key] for s in stats])) for key in stats[0]}


def test_projection_statistics_match_embryo_sample():
    real = np.asarray(Image.open(SAMPLES_DIR / "embryo_sample.png"))[..., 1]  # GFP in green
    simulated = []
    for seed in SEEDS:
        embryo, rng = simulate_embryo(seed), np.random.default_rng(seed)
        # embryo_sample.png shows ~90 nuclei: about the 100-120 cell stage.
        t = embryo.grid_time_with_total(110)
        view = random_projection_view(rng, embryo, real.shape)
        image, _ = render_nucleus_projection(embryo, t, view, NucleusLook.draw(rng), rng)
        simulated.append(projection_statistics(image))
    sim, ref = _median(simulated), projection_statistics(real)
    assert abs(sim["p75"] - ref["p75"]) < 0.25, (sim, ref)
    assert abs(sim["p90"] - ref["p90"]) < 0.2, (sim, ref)
    assert abs(sim["foreground"] - ref["foreground"]) < 0.08, (sim, ref)
    assert abs(sim["nucleus_size"] / ref["nucleus_size"] - 1.0) < 0.3, (sim, ref)


def test_membrane_statistics_match_seg_sample():
    real = np.asarray(Image.open(SAMPLES_DIR / "seg_sample.jpg").convert("L"))
    simulated = []
    for seed in SEEDS:
        embryo, rng = simulate_embryo(seed), np.random.default_rng(seed)
        # seg_sample.jpg cuts about 5 cells of an early embryo.
        t = embryo.grid_time_with_total(8)
        view = random_membrane_view(rng, embryo, (40, *real.shape))
        geometry = slice_geometry(embryo, t, view, 20)
        simulated.append(
            membrane_statistics(render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng))
        )
    sim, ref = _median(simulated), membrane_statistics(real)
    assert abs(sim["p90"] - ref["p90"]) < 0.2, (sim, ref)
    assert 0.4 < sim["membrane"] / ref["membrane"] < 2.0, (sim, ref)
    assert abs(sim["embryo"] - ref["embryo"]) < 0.15, (sim, ref)
    assert 0.4 < sim["cell_size"] / ref["cell_size"] < 2.5, (sim, ref)
