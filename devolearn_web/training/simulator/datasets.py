"""Write simulated embryos to disk: Cell Tracking Challenge folders, projections, lineage frames."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from devolearn_web.training.parallel import rows_in_order
from devolearn_web.training.simulator.embryo import A_TARGET, Embryo, simulate_embryo
from devolearn_web.training.simulator.lineage import LINEAGE_KEYS
from devolearn_web.training.simulator.render_membrane import (
    MembraneLook,
    membrane_labels,
    membrane_to_uint16,
    random_membrane_view,
    render_membrane_slice,
    slice_geometry,
)
from devolearn_web.training.simulator.render_nucleus import (
    DIMMEST_NUCLEUS,
    NucleusLook,
    label_visible_caps,
    random_projection_view,
    random_stack_view,
    render_nucleus_projection,
    render_nucleus_stack,
)

SEQUENCE_COLUMNS = ("sequence", "seed", "time_index", "minutes", *LINEAGE_KEYS)
POPULATION_COLUMNS = ("file", "seed", "frame", "minutes", *LINEAGE_KEYS)
# 3DMMS covers the 4-cell stage to about 350 cells.
MEMBRANE_FIRST_CELLS = 4
MEMBRANE_LAST_CELLS = 350
# Independent random streams per purpose, so adding one output never changes another.
_STREAM_NUCLEUS, _STREAM_PROJECTION, _STREAM_MEMBRANE, _STREAM_LINEAGE = 1, 2, 3, 4
_STREAM_UNEVEN = 5


def spread_times(embryo: Embryo, start: float, end: float, count: int) -> list[float]:
    """`count` simulated minutes spread evenly from start to end (both included)."""
    if count < 1:
        raise ValueError(f"need at least one time point, got {count}")
    wanted = np.linspace(start, end, count) if count > 1 else np.array([start])
    return [float(embryo.times[embryo.time_index(t + 0.5)]) for t in wanted]


def write_nucleus_dataset(
    out_dir: Path,
    seeds: Sequence[int],
    timepoints: int,
    shape: tuple[int, int, int] = (35, 512, 708),
    projections: bool = True,
    projection_only_seeds: Sequence[int] = (),
    processes: int = 1,
    uneven_share: float = 0.0,
    visible_caps: bool = False,
    uneven_stacks: bool = True,
) -> Path:
    """Fluo-N3DH-CE-like nucleus stacks with per-slice labels (and projections); returns out_dir.

    `projection_only_seeds` add embryos seen only as whole-embryo projections, with wider blur:
    a stack gives one projection per time point against dozens of slices, too few to learn to
    separate the crowded, blurred nuclei of a real projection such as embryo_sample.png.
    `uneven_share` of the stacks and projections show each nucleus at its own brightness, down
    to a tenth (`render_nucleus.cell_dimming`), with the labels an even share of 0 writes;
    without `uneven_stacks` only the projections do (a slice's dim nucleus and the
    out-of-focus light of one above or below look alike; a projection's nuclei are all in focus).
    `visible_caps` labels each nucleus's cap where the next slice shows it as well
    (`render_nucleus.label_visible_caps`).
    `processes` > 1 renders embryos in parallel; the files are the same."""
    out_dir = Path(out_dir)
    stacks = [
        partial(
            _nucleus_embryo,
            out_dir,
            f"{number:02d}",
            seed,
            timepoints,
            shape,
            projections,
            uneven_share,
            visible_caps,
            uneven_stacks,
        )
        for number, seed in enumerate(seeds, start=1)
    ]
    extras = [
        partial(_projection_only_embryo, out_dir, seed, timepoints, shape, uneven_share)
        for seed in projection_only_seeds
    ]
    rows_written = rows_in_order(stacks + extras, processes)
    _write_csv(out_dir / "sequences.csv", SEQUENCE_COLUMNS, rows_written)
    return out_dir


def _nucleus_embryo(
    out_dir: Path,
    sequence: str,
    seed: int,
    timepoints: int,
    shape: tuple[int, int, int],
    projections: bool,
    uneven_share: float = 0.0,
    visible_caps: bool = False,
    uneven_stacks: bool = True,
) -> list[dict]:
    """One embryo's stacks (and projections) written; returns its sequences.csv rows."""
    embryo = simulate_embryo(seed)
    rng = np.random.default_rng((seed, _STREAM_NUCLEUS))
    view = random_stack_view(rng, embryo, tuple(shape))
    end = embryo.last_grid_time_with_a_at_most(A_TARGET)
    rows = []
    for index, minutes in enumerate(spread_times(embryo, 0.0, end, timepoints)):
        stack_share = uneven_share if uneven_stacks else 0.0
        look = _maybe_uneven(NucleusLook.draw(rng), stack_share, (seed, _STREAM_NUCLEUS, index))
        image, labels = render_nucleus_stack(embryo, minutes, view, look, rng)
        if visible_caps:
            labels = label_visible_caps(image, labels)
        _write_ctc_time_point(out_dir, sequence, index, image, labels)
        rows.append(_sequence_row(embryo, sequence, index, minutes))
        if projections:
            projection_dir = out_dir / "projections"
            _write_projection(
                projection_dir, embryo, index, minutes, shape[1:], uneven_share=uneven_share
            )
    return rows


def _projection_only_embryo(
    out_dir: Path, seed: int, timepoints: int, shape: tuple[int, int, int], uneven_share: float
) -> list[dict]:
    """One embryo written only as projections, with up to twice the blur; no rows."""
    embryo = simulate_embryo(seed)
    end = embryo.last_grid_time_with_a_at_most(A_TARGET)
    for index, minutes in enumerate(spread_times(embryo, 0.0, end, timepoints)):
        _write_projection(
            out_dir / "projections",
            embryo,
            index,
            minutes,
            shape[1:],
            blur_scale=(1.0, 2.0),
            uneven_share=uneven_share,
        )
    return []


def _maybe_uneven(look: NucleusLook, share: float, key: tuple[int, ...]) -> NucleusLook:
    """The look with unevenly bright nuclei for `share` of the images, decided by its own
    stream, apart from the render's."""
    if share <= 0.0 or np.random.default_rng((*key, _STREAM_UNEVEN)).random() >= share:
        return look
    return replace(look, dimmest=DIMMEST_NUCLEUS)


def write_membrane_dataset(
    out_dir: Path,
    seeds: Sequence[int],
    timepoints: int,
    shape: tuple[int, int, int] = (40, 256, 356),
    processes: int = 1,
) -> Path:
    """3DMMS-like membrane stacks with per-slice eroded cell labels; returns out_dir."""
    out_dir = Path(out_dir)
    jobs = [
        partial(_membrane_embryo, out_dir, f"{number:02d}", seed, timepoints, shape)
        for number, seed in enumerate(seeds, start=1)
    ]
    rows_written = rows_in_order(jobs, processes)
    _write_csv(out_dir / "sequences.csv", SEQUENCE_COLUMNS, rows_written)
    return out_dir


def _membrane_embryo(
    out_dir: Path, sequence: str, seed: int, timepoints: int, shape: tuple[int, int, int]
) -> list[dict]:
    """One embryo's membrane stacks written; returns its sequences.csv rows."""
    embryo = simulate_embryo(seed)
    rng = np.random.default_rng((seed, _STREAM_MEMBRANE))
    view = random_membrane_view(rng, embryo, tuple(shape))
    start = embryo.grid_time_with_total(MEMBRANE_FIRST_CELLS)
    end = embryo.grid_time_with_total(MEMBRANE_LAST_CELLS)
    rows = []
    for index, minutes in enumerate(spread_times(embryo, start, end, timepoints)):
        look = MembraneLook.draw(rng)
        image = np.zeros(shape, dtype=np.uint16)
        labels = np.zeros(shape, dtype=np.uint16)
        for z in range(shape[0]):
            geometry = slice_geometry(embryo, minutes, view, z)
            image[z] = membrane_to_uint16(render_membrane_slice(geometry, view, look, rng))
            labels[z] = membrane_labels(geometry, view)
        _write_ctc_time_point(out_dir, sequence, index, image, labels)
        rows.append(_sequence_row(embryo, sequence, index, minutes))
    return rows


def write_lineage_dataset(
    out_dir: Path,
    seeds: Sequence[int],
    frames: int,
    shape: tuple[int, int] = (315, 585),
    processes: int = 1,
) -> Path:
    """Whole-embryo projections, 1-cell stage to A=250, with lineage counts; returns out_dir."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    jobs = [partial(_lineage_embryo, out_dir, seed, frames, shape) for seed in seeds]
    rows_written = rows_in_order(jobs, processes)
    _write_csv(out_dir / "populations.csv", POPULATION_COLUMNS, rows_written)
    return out_dir


def _lineage_embryo(out_dir: Path, seed: int, frames: int, shape: tuple[int, int]) -> list[dict]:
    """One embryo's frames written; returns its populations.csv rows."""
    embryo = simulate_embryo(seed)
    rng = np.random.default_rng((seed, _STREAM_LINEAGE))
    end = embryo.last_grid_time_with_a_at_most(A_TARGET)
    rows = []
    for frame, minutes in enumerate(spread_times(embryo, 0.0, end, frames)):
        view = random_projection_view(rng, embryo, tuple(shape))
        image, _ = render_nucleus_projection(embryo, minutes, view, NucleusLook.draw(rng), rng)
        name = f"{seed}_{frame:03d}.png"
        Image.fromarray(image).save(out_dir / "images" / name)
        counts = embryo.populations_at(minutes)
        rows.append({"file": name, "seed": seed, "frame": frame, "minutes": minutes, **counts})
    return rows


def _write_projection(
    out_dir: Path,
    embryo: Embryo,
    index: int,
    minutes: float,
    shape: tuple[int, int],
    blur_scale: tuple[float, float] = (1.0, 1.0),
    uneven_share: float = 0.0,
) -> None:
    rng = np.random.default_rng((embryo.seed, _STREAM_PROJECTION, index))
    view = random_projection_view(rng, embryo, tuple(shape))
    look = NucleusLook.draw(rng)
    if blur_scale != (1.0, 1.0):
        look = replace(look, blur_px=look.blur_px * float(rng.uniform(*blur_scale)))
    look = _maybe_uneven(look, uneven_share, (embryo.seed, _STREAM_PROJECTION, index))
    image, labels = render_nucleus_projection(embryo, minutes, view, look, rng)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_dir / "images" / f"{embryo.seed}_{index:03d}.png")
    tifffile.imwrite(
        out_dir / "labels" / f"{embryo.seed}_{index:03d}.tif", labels, compression="zlib"
    )


def _write_ctc_time_point(
    out_dir: Path, sequence: str, index: int, image: np.ndarray, labels: np.ndarray
) -> None:
    """tTTT.tif (one page per slice) and one man_seg_TTT_ZZZ.tif per slice."""
    raw_dir = out_dir / sequence
    seg_dir = out_dir / f"{sequence}_GT" / "SEG"
    raw_dir.mkdir(parents=True, exist_ok=True)
    seg_dir.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(raw_dir / f"t{index:03d}.tif", image)
    for z in range(labels.shape[0]):
        tifffile.imwrite(
            seg_dir / f"man_seg_{index:03d}_{z:03d}.tif", labels[z], compression="zlib"
        )


def _sequence_row(embryo: Embryo, sequence: str, index: int, minutes: float) -> dict:
    return {
        "sequence": sequence,
        "seed": embryo.seed,
        "time_index": index,
        "minutes": minutes,
        **embryo.populations_at(minutes),
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
