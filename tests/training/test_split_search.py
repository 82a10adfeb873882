"""The split search: scores each setting on validation maps and ranks them by the model's target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from processed_samples import write_processed_samples

pytestmark = pytest.mark.training

from devolearn_web.segmentation import SplitSettings  # noqa: E402
from devolearn_web.training.layout import Workspace  # noqa: E402
from devolearn_web.training.split_search import (  # noqa: E402
    format_table,
    score_setting,
    split_search,
)

SIDE = 256


def touching_pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels): two pairs of touching disks, each disk its own reference object."""
    rows, cols = np.mgrid[:SIDE, :SIDE]
    labels = np.zeros((SIDE, SIDE), dtype=np.int32)
    label = 0
    for row in (70, 180):
        col = 60 + int(rng.integers(0, 40))
        for shift, radius in ((0, 17), (28, 14)):  # the pair overlaps by 3 pixels
            label += 1
            labels[(rows - row) ** 2 + (cols - col - shift) ** 2 <= radius**2] = label
    image = np.where(labels > 0, 0.9, 0.1) + rng.normal(0, 0.02, labels.shape)
    return np.clip(image, 0, 1).astype(np.float32), labels


@pytest.fixture
def membrane_workspace(tiny_models_dir: Path, tmp_path: Path) -> Workspace:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    workspace = Workspace("membrane", tmp_path / "data", tmp_path / "runs", models_dir)
    rng = np.random.default_rng(0)
    write_processed_samples(workspace, [("validation", *touching_pairs(rng)) for _ in range(3)])
    return workspace


def test_a_setting_that_splits_the_pairs_scores_better_than_one_that_cannot():
    rng = np.random.default_rng(1)
    samples = [touching_pairs(rng) for _ in range(2)]
    probabilities = np.stack([(labels > 0).astype(np.float32) for _, labels in samples])
    references = np.stack([labels for _, labels in samples])
    splits = score_setting(
        SplitSettings(3, 1.0, 0.0), probabilities, references, ["slice"] * 2, 0.5
    )
    # A window wider than the pair's centre distance finds one peak per pair.
    merges = score_setting(
        SplitSettings(40, 1.0, 0.0), probabilities, references, ["slice"] * 2, 0.5
    )
    assert splits["count_error_percent"] == 0.0 and splits["seg"] > 0.8
    assert merges["count_error_percent"] == 50.0 and merges["seg"] < splits["seg"]
    assert splits["seg_by_kind"] == {"slice": splits["seg"]}


def test_split_search_ranks_the_grid_and_writes_its_record(membrane_workspace):
    record = split_search(membrane_workspace, images=3, threads=1)
    assert record["validation_maps"] == 3 and record["objective"] == "min count_error_percent"
    errors = [row["count_error_percent"] for row in record["results"]]
    assert errors == sorted(errors) and record["best"] == record["results"][0]
    assert errors[0] == 0.0
    written = json.loads((membrane_workspace.run_dir / "split_search.json").read_text())
    assert written["best"] == record["best"]
    table = format_table(record)
    assert table.splitlines()[0].startswith("membrane: 3 validation maps")
    assert len(table.splitlines()) == 3 + len(record["results"])
    # Split on their true masks, the fake data's discs are found nearly whole.
    ceiling = record["best_on_true_masks"]["seg"]
    assert 0.9 <= ceiling <= 1.0
    assert table.splitlines()[-1] == f"the best setting on the true masks: SEG {ceiling}"


def test_split_search_refuses_the_lineage_model(tmp_path):
    with pytest.raises(ValueError, match="does not segment"):
        split_search(Workspace("lineage", tmp_path / "data", tmp_path / "runs", tmp_path / "m"))
