"""Tiny fake datasets in the simulator's on-disk formats, so training tests need no simulator."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

LINEAGES = ("A", "E", "M", "P", "C", "D", "Z")
# Slices 0 and 5 hold no object (dropped at the stack ends); slice 3 is empty but inside.
OCCUPIED_SLICES = (1, 2, 4)
STACK_SHAPE = (6, 40, 50)
# Label values above 255 prove the label PNGs are 16-bit.
FIRST_LABEL = 300


def disc_labels(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """An instance label map (uint16) with one disc per centre, labels FIRST_LABEL, +1, ..."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.uint16)
    for number, (row, col) in enumerate(centres):
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = FIRST_LABEL + number
    return labels


def _image_from(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 16-bit image where objects are bright: background ~200, objects ~3000, plus noise."""
    image = np.where(labels > 0, 3000.0, 200.0) + rng.normal(0, 50, labels.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def write_fake_ctc(out_dir: Path, seeds: list[int], timepoints: int = 2) -> Path:
    """A Cell Tracking Challenge folder like the simulator's, with projections (tiny)."""
    import tifffile

    rng = np.random.default_rng(seeds[0])
    depth, height, width = STACK_SHAPE
    rows = []
    for number, seed in enumerate(seeds, start=1):
        sequence = f"{number:02d}"
        (out_dir / sequence).mkdir(parents=True, exist_ok=True)
        seg_dir = out_dir / f"{sequence}_GT" / "SEG"
        seg_dir.mkdir(parents=True, exist_ok=True)
        for t in range(timepoints):
            stack_labels = np.zeros(STACK_SHAPE, dtype=np.uint16)
            for z in OCCUPIED_SLICES:
                centres = [(10 + 2 * t, 12 + z), (28, 35 - z)]
                stack_labels[z] = disc_labels((height, width), centres, radius=6)
            tifffile.imwrite(out_dir / sequence / f"t{t:03d}.tif", _image_from(stack_labels, rng))
            for z in range(depth):
                tifffile.imwrite(seg_dir / f"man_seg_{t:03d}_{z:03d}.tif", stack_labels[z])
            rows.append({"sequence": sequence, "seed": seed, "time_index": t, "minutes": 5.0 * t})
            projection = disc_labels((height, width), [(12, 12), (20, 30), (30, 40)], radius=4)
            for folder in ("images", "labels"):
                (out_dir / "projections" / folder).mkdir(parents=True, exist_ok=True)
            image8 = (_image_from(projection, rng) // 16).astype(np.uint8)
            Image.fromarray(image8).save(out_dir / "projections" / "images" / f"{seed}_{t:03d}.png")
            tifffile.imwrite(out_dir / "projections" / "labels" / f"{seed}_{t:03d}.tif", projection)
    counts = {name: 1 for name in LINEAGES}
    _write_csv(out_dir / "sequences.csv", [{**row, **counts} for row in rows])
    return out_dir


def write_fake_lineage(out_dir: Path, seeds: list[int], frames: int = 3) -> Path:
    """A lineage folder like the simulator's: images/<seed>_<FFF>.png + populations.csv."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seeds[0])
    rows = []
    for seed in seeds:
        for frame in range(frames):
            cells = 2 + frame
            centres = [(8 + 6 * (k % 4), 10 + 12 * (k // 4)) for k in range(cells)]
            labels = disc_labels((40, 60), centres, radius=2)
            image = (_image_from(labels, rng) // 16).astype(np.uint8)
            name = f"{seed}_{frame:03d}.png"
            Image.fromarray(image).save(out_dir / "images" / name)
            counts = {"A": cells, "E": 1, "M": 1, "P": 1, "C": 0, "D": 0, "Z": 0}
            rows.append({"file": name, "seed": seed, "frame": frame, "minutes": 10.0 * frame})
            rows[-1].update(counts)
    _write_csv(out_dir / "populations.csv", rows)
    return out_dir


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


SPLIT_SEEDS = {"train": [0, 1], "validation": [1000], "test": [2000]}


def fake_simulation(workspace, timepoints: int = 2) -> None:
    """Write fake split folders where `simulate` would, and its record, for a workspace."""
    from devolearn_web.training.simulate import SimulationPlan

    for split, seeds in SPLIT_SEEDS.items():
        folder = workspace.simulated_split_dir(split)
        if workspace.model == "lineage":
            write_fake_lineage(folder, seeds, frames=timepoints + 1)
        else:
            write_fake_ctc(folder, seeds, timepoints)
    plan = SimulationPlan(workspace.model, SPLIT_SEEDS, timepoints)
    workspace.data_dir.mkdir(parents=True, exist_ok=True)
    workspace.simulation_record.write_text(json.dumps(plan.to_record()))


@pytest.fixture
def fake_facts() -> SimpleNamespace:
    """What the fake datasets hold, for tests to check against."""
    return SimpleNamespace(first_label=FIRST_LABEL, occupied_slices=OCCUPIED_SLICES)


@pytest.fixture
def workspace_factory(tmp_path: Path):
    """Make a Workspace of a model under tmp_path, with fake simulated data in place."""
    from devolearn_web.training.layout import Workspace

    def make(model: str, preprocess_size: int | None = 64) -> Workspace:
        workspace = Workspace(
            model=model,
            data_root=tmp_path / "data",
            runs_root=tmp_path / "runs",
            models_dir=tmp_path / "models",
            docs_images_dir=tmp_path / "docs_images",
        )
        fake_simulation(workspace)
        if preprocess_size:
            from devolearn_web.training.preprocess import preprocess

            preprocess(workspace, size=preprocess_size)
        return workspace

    return make
