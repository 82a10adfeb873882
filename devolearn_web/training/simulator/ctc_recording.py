"""Simulated 3D+t recordings in the Cell Tracking Challenge layout, with their truth.

    <folder>/01/tTTT.tif                 the z-stacks (uint16 ZYX, 12-bit values)
    <folder>/01_GT/SEG/man_segTTT.tif    every nucleus, labelled (cell id + 1)
    <folder>/01_GT/TRA/man_trackTTT.tif  the same labels (the simulator knows every nucleus)
    <folder>/01_GT/TRA/man_track.txt     label begin end parent, as the challenge writes it
    <folder>/recording.json              voxel size, true counts, seed and stage

Time points are a minute apart, as in Fluo-N3DH-CE. Use seeds never used in training
(held_out.TEST_SEEDS) for measurements.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.training.simulator.embryo import Embryo, simulate_embryo
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    random_stack_view,
    render_nucleus_stack,
)

# Half the Fluo-N3DH-CE frame (0.18-0.23 um pixels): a time point segments in seconds on a CPU.
STACK_SHAPE = (35, 256, 354)
MINUTES_PER_TIME_POINT = 1.0


@dataclass(frozen=True)
class Recording:
    """What was written: where, the voxel size, and the true number of nuclei per time point."""

    folder: str
    seed: int
    cells: int
    start_minutes: float
    um_per_px: float
    z_step_um: float
    true_counts: list[int]


def truth_tracks(embryo: Embryo, labels: list[np.ndarray]) -> str:
    """man_track.txt of the simulator's cells seen in the recording (label = cell id + 1)."""
    seen: dict[int, list[int]] = {}
    for t, volume in enumerate(labels):
        for label in np.unique(volume[volume > 0]):
            seen.setdefault(int(label), []).append(t)
    lines = []
    for label, times in sorted(seen.items()):
        parent = int(embryo.cells.parent[label - 1]) + 1
        lines.append(f"{label} {min(times)} {max(times)} {parent if parent in seen else 0}")
    return "\n".join(lines) + "\n"


def write_ctc_recording(
    folder: Path,
    seed: int,
    cells: int,
    times: int,
    shape: tuple[int, int, int] = STACK_SHAPE,
    embryo: Embryo | None = None,
) -> Recording:
    """Render `times` z-stacks from the first minute with `cells` cells, with their truth."""
    embryo = embryo or simulate_embryo(seed)
    rng = np.random.default_rng((seed, 22, cells))
    view = random_stack_view(rng, embryo, shape)
    look = NucleusLook.draw(rng)
    start = embryo.grid_time_with_total(cells)
    folder = Path(folder)
    for sub in ("01", "01_GT/SEG", "01_GT/TRA"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    truth = []
    for t in range(times):
        stack, labels = render_nucleus_stack(
            embryo, start + t * MINUTES_PER_TIME_POINT, view, look, rng
        )
        truth.append(labels)
        tifffile.imwrite(folder / "01" / f"t{t:03d}.tif", stack)
        tifffile.imwrite(folder / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
        tifffile.imwrite(folder / "01_GT" / "TRA" / f"man_track{t:03d}.tif", labels)
    (folder / "01_GT" / "TRA" / "man_track.txt").write_text(truth_tracks(embryo, truth))
    recording = Recording(
        str(folder),
        seed,
        cells,
        float(start),
        float(view.um_per_px),
        float(view.z_step_um),
        [len(np.unique(labels)) - 1 for labels in truth],
    )
    (folder / "recording.json").write_text(json.dumps(asdict(recording), indent=1))
    return recording


def truth_tracking(
    embryo: Embryo, cells: int, times: int, rng: np.random.Generator | None = None
) -> tuple[list, list[dict[int, np.ndarray]], dict[int, str]]:
    """The simulator's own tracks from the first minute with `cells` cells, a minute apart:
    CTC tracks (label = cell id + 1), per time point label -> centre (um, turned and flipped
    at random when `rng` is given, as a microscope would see it), and each label's true name."""
    from devolearn_web.tracking import Track

    start = embryo.time_index(embryo.grid_time_with_total(cells))
    turn = np.eye(3)
    if rng is not None:
        turn, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random rotation or reflection
    seen: dict[int, list[int]] = {}
    positions = []
    for t in range(times):
        index = min(start + t, len(embryo.times) - 1)
        ids, centres = embryo.alive_ids[index], embryo.centres[index] @ turn.T
        positions.append({int(i) + 1: centre for i, centre in zip(ids, centres, strict=True)})
        for i in ids:
            seen.setdefault(int(i) + 1, []).append(t)
    tracks = []
    for label, moments in sorted(seen.items()):
        parent = int(embryo.cells.parent[label - 1]) + 1
        tracks.append(Track(label, min(moments), max(moments), parent if parent in seen else 0))
    names = {label: embryo.cells.names[label - 1] for label in seen}
    return tracks, positions, names
