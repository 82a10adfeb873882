"""Turn dataset folders (Cell Tracking Challenge layout, lineage frames) into PNGs + index."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.training.images import (
    lineage_network_image,
    network_image,
    read_gray,
    read_labels,
    resize_labels,
    separate_touching_labels,
    write_image_png,
    write_labels_png,
)
from devolearn_web.training.index import (
    LINEAGE_COLUMNS,
    SEGMENTATION_COLUMNS,
    write_index,
)
from devolearn_web.training.layout import SPLITS, Workspace
from devolearn_web.training.parallel import rows_in_order
from devolearn_web.training.specs import LINEAGES, MODEL_SIDE, get_spec

SEQUENCE_DIR = re.compile(r"^\d{2,}$")
GOLD_SLICE = re.compile(r"^man_seg_?(\d+)_(\d+)\.tiff?$")
PROJECTION_NAME = re.compile(r"^(.+)_(\d+)$")


@dataclass(frozen=True)
class SequenceInfo:
    """What sequences.csv says about one time point of one sequence."""

    seed: str
    minutes: str


def read_sequences_csv(source: Path) -> dict[tuple[str, int], SequenceInfo]:
    """(sequence, time index) -> seed and minutes, from sequences.csv when the folder has one."""
    path = source / "sequences.csv"
    if not path.exists():
        return {}
    table = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            sequence = row["sequence"].zfill(2)
            table[(sequence, int(row["time_index"]))] = SequenceInfo(row["seed"], row["minutes"])
    return table


def trim_empty_ends(slices: dict[int, np.ndarray], empty_ends: int = 0) -> list[int]:
    """The slice numbers from the first to the last slice that hold any object, and up to
    `empty_ends` empty slices beyond each end."""
    occupied = [z for z in sorted(slices) if slices[z].any()]
    if not occupied:
        return []
    first, last = occupied[0] - empty_ends, occupied[-1] + empty_ends
    return [z for z in sorted(slices) if first <= z <= last]


def _gold_slices(sequence_dir: Path) -> dict[str, dict[int, Path]]:
    """Time-point digits (as written) -> {slice number: label TIFF} of one sequence's gold truth."""
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    seg_dir = sequence_dir.parent / f"{sequence_dir.name}_GT" / "SEG"
    for path in sorted(seg_dir.glob("man_seg*")):
        match = GOLD_SLICE.match(path.name)
        if match:
            found[match.group(1)][int(match.group(2))] = path
    return found


def _sample_id(split: str, seed: str, sequence: str, time_index: int, suffix: str) -> str:
    # Simulated seeds are disjoint across splits; real sequences may repeat, so name the split.
    owner = f"s{int(seed):04d}" if seed else f"{split}-seq{sequence}"
    return f"{owner}_t{time_index:03d}_{suffix}"


def _write_pair(out_dir: Path, sample_id: str, image: np.ndarray, labels: np.ndarray, size: int):
    """Write one resized image/label pair; returns (image path, label path, object count)."""
    small_image = network_image(image, size)
    small_labels = separate_touching_labels(resize_labels(labels, size))
    image_path = Path("images") / f"{sample_id}.png"
    label_path = Path("labels") / f"{sample_id}.png"
    write_image_png(out_dir / image_path, small_image)
    write_labels_png(out_dir / label_path, small_labels)
    objects = int(np.unique(small_labels[small_labels > 0]).size)
    return image_path.as_posix(), label_path.as_posix(), objects


Job = Callable[[], list[dict]]


def ctc_jobs(source: Path, split: str, out_dir: Path, size: int, empty_ends: int) -> list[Job]:
    """One job per annotated time point of every sequence in a CTC folder."""
    info = read_sequences_csv(source)
    jobs = []
    for sequence_dir in sorted(p for p in source.iterdir() if SEQUENCE_DIR.match(p.name)):
        sequence = sequence_dir.name
        for digits, slice_paths in sorted(_gold_slices(sequence_dir).items()):
            time_index = int(digits)
            meta = info.get((sequence, time_index), SequenceInfo("", ""))
            fields = {
                "sequence": sequence,
                "seed": meta.seed,
                "time_index": time_index,
                "minutes": meta.minutes,
            }
            stack = sequence_dir / f"t{digits}.tif"
            jobs.append(
                partial(_slice_rows, split, out_dir, size, stack, slice_paths, fields, empty_ends)
            )
    return jobs


def _slice_rows(
    split: str,
    out_dir: Path,
    size: int,
    stack_path: Path,
    slice_paths: dict,
    fields: dict,
    empty_ends: int,
) -> list[dict]:
    """Index rows of one time point's annotated slices, their PNGs written."""
    stack = tifffile.imread(stack_path)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    labels_by_slice = {z: read_labels(path) for z, path in slice_paths.items()}
    rows = []
    for z in trim_empty_ends(labels_by_slice, empty_ends):
        sample_id = _sample_id(
            split, fields["seed"], fields["sequence"], fields["time_index"], f"z{z:03d}"
        )
        pair = _write_pair(out_dir, sample_id, stack[z], labels_by_slice[z], size)
        rows.append(_segmentation_row(sample_id, split, "slice", {**fields, "slice": z}, *pair))
    return rows


def projection_jobs(source: Path, split: str, out_dir: Path, size: int) -> list[Job]:
    """One job per whole-embryo projection (projections/images + labels)."""
    image_dir = source / "projections" / "images"
    if not image_dir.exists():
        return []
    minutes_by_key = {
        (meta.seed, time_index): meta.minutes
        for (_, time_index), meta in read_sequences_csv(source).items()
    }
    jobs = []
    for image_file in sorted(image_dir.glob("*.png")):
        match = PROJECTION_NAME.match(image_file.stem)
        if not match:
            raise ValueError(f"{image_file.name}: expected <seed>_<TTT>.png")
        seed, time_index = match.group(1), int(match.group(2))
        label_file = source / "projections" / "labels" / f"{image_file.stem}.tif"
        fields = {
            "sequence": "",
            "seed": seed,
            "time_index": time_index,
            "minutes": minutes_by_key.get((seed, time_index), ""),
            "slice": "",
        }
        jobs.append(partial(_projection_rows, split, out_dir, size, image_file, label_file, fields))
    return jobs


def _projection_rows(
    split: str, out_dir: Path, size: int, image_file: Path, label_file: Path, fields: dict
) -> list[dict]:
    """The index row of one projection, its PNGs written."""
    sample_id = _sample_id(split, fields["seed"], "", fields["time_index"], "proj")
    pair = _write_pair(out_dir, sample_id, read_gray(image_file), read_labels(label_file), size)
    return [_segmentation_row(sample_id, split, "projection", fields, *pair)]


def _segmentation_row(
    sample_id: str,
    split: str,
    kind: str,
    fields: dict,
    image_path: str,
    label_path: str,
    objects: int,
) -> dict:
    return {
        "id": sample_id,
        "split": split,
        "kind": kind,
        **fields,
        "image": image_path,
        "label": label_path,
        "objects": objects,
    }


def lineage_jobs(source: Path, split: str, out_dir: Path, size: int) -> list[Job]:
    """One job per frame listed in populations.csv."""
    with (source / "populations.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    jobs = []
    for row in table:
        image_file = source / row["file"]
        if not image_file.exists():
            image_file = source / "images" / row["file"]
        fields = {
            "seed": row["seed"],
            "time_index": int(row["frame"]),
            "minutes": row["minutes"],
            **{lineage: int(row[lineage]) for lineage in LINEAGES},
        }
        jobs.append(partial(_frame_rows, split, out_dir, size, image_file, fields))
    return jobs


def _frame_rows(split: str, out_dir: Path, size: int, image_file: Path, fields: dict) -> list[dict]:
    """The index row of one lineage frame, its PNG written."""
    sample_id = _sample_id(split, fields["seed"], "", fields["time_index"], "frame")
    image_path = Path("images") / f"{sample_id}.png"
    view = lineage_network_image(read_gray(image_file), size)
    if view is None:  # the app answers such a frame with a 422, not counts
        return []
    write_image_png(out_dir / image_path, view)
    return [
        {"id": sample_id, "split": split, "kind": "frame", "image": image_path.as_posix(), **fields}
    ]


def preprocess(
    workspace: Workspace,
    sources: dict[str, Path] | None = None,
    size: int = MODEL_SIDE,
    force: bool = False,
    processes: int = 1,
    train_empty_ends: int = 0,
) -> Path:
    """Write data/<model>/processed (images/, labels/, index.csv) from one folder per split.

    `processes` > 1 writes the PNGs in parallel; the files and the index are the same.
    `train_empty_ends` keeps that many empty slices past each end of the train stacks, so a
    network sees the out-of-focus glow and noise a stack's ends hold; other splits keep none,
    so their figures stay comparable."""
    if workspace.index_csv.exists() and not force:
        return workspace.index_csv
    if workspace.processed_dir.exists():
        shutil.rmtree(workspace.processed_dir)  # no stale samples from an older run
    simulated = sources is None
    sources = sources or {split: workspace.simulated_split_dir(split) for split in SPLITS}
    spec = get_spec(workspace.model)
    out_dir = workspace.processed_dir
    jobs: list[Job] = []
    for split, source in sources.items():
        if not source.exists():
            raise FileNotFoundError(f"{source} not found; run the simulate command first")
        if spec.is_segmentation:
            ends = train_empty_ends if split == "train" else 0
            jobs += ctc_jobs(source, split, out_dir, size, ends)
            jobs += projection_jobs(source, split, out_dir, size)
        else:
            jobs += lineage_jobs(source, split, out_dir, size)
    rows = rows_in_order(jobs, processes)
    if not rows:
        raise ValueError(
            f"no annotated samples found under {', '.join(map(str, sources.values()))}"
        )
    columns = SEGMENTATION_COLUMNS if spec.is_segmentation else LINEAGE_COLUMNS
    write_index(workspace.index_csv, rows, columns)
    record = {"simulated": simulated, "sources": {k: str(v) for k, v in sources.items()}}
    if train_empty_ends:
        record["train_empty_ends"] = train_empty_ends
    workspace.sources_record.write_text(json.dumps(record, indent=2) + "\n")
    return workspace.index_csv
