"""The CSV index of preprocessed samples: one row per feature/label pair, paths relative to it."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from devolearn_web.training.specs import LINEAGES

SEGMENTATION_COLUMNS = (
    "id",
    "split",
    "kind",
    "sequence",
    "seed",
    "time_index",
    "minutes",
    "slice",
    "image",
    "label",
    "objects",
)
LINEAGE_COLUMNS = ("id", "split", "kind", "seed", "time_index", "minutes", "image", *LINEAGES)


def write_index(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Write the rows atomically (a reader never sees half an index); ids must be unique."""
    duplicates = [key for key, count in Counter(row["id"] for row in rows).items() if count > 1]
    if duplicates:
        raise ValueError(f"sample ids must be unique; repeated: {', '.join(duplicates[:5])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def read_index(path: Path, split: str | None = None) -> list[dict[str, str]]:
    """Rows of the index as strings, only those of one split when `split` is given."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run the preprocess command first")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if split is None:
        return rows
    return [row for row in rows if row["split"] == split]


def split_sizes(path: Path) -> dict[str, int]:
    """How many samples each split holds."""
    return dict(Counter(row["split"] for row in read_index(path)))


def split_seeds(path: Path) -> dict[str, list[int]]:
    """The distinct seeds of each split (rows without a seed, e.g. real data, are skipped)."""
    seeds: dict[str, set[int]] = {}
    for row in read_index(path):
        if row.get("seed"):
            seeds.setdefault(row["split"], set()).add(int(row["seed"]))
    return {split: sorted(values) for split, values in seeds.items()}
