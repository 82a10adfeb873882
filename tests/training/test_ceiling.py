"""The ceiling: the FPN's output grid fitted to labels, and how the fitted maps are scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from processed_samples import write_processed_samples

pytestmark = pytest.mark.training

from devolearn_web.training.ceiling import (  # noqa: E402
    OUTPUT_STRIDE,
    fit_output_grid,
    ideal_split,
    measure_ceiling,
    recorded_ceiling,
    score_fitted_maps,
)
from devolearn_web.training.layout import Workspace  # noqa: E402
from devolearn_web.training.metrics import OverlapTally  # noqa: E402

SIDE = 64


def squares(gap: int) -> np.ndarray:
    """Labels (int32 SIDE x SIDE): two 20-pixel squares side by side, `gap` pixels apart."""
    labels = np.zeros((SIDE, SIDE), dtype=np.int32)
    labels[22:42, 10 : 10 + 20] = 1
    labels[22:42, 30 + gap : 50 + gap] = 2
    return labels


def fitted_mask(labels: np.ndarray) -> np.ndarray:
    return fit_output_grid((labels > 0)[None], steps=200)[0] >= 0.5


def iou(mask: np.ndarray, labels: np.ndarray) -> float:
    tally = OverlapTally()
    tally.add(mask, labels > 0)
    return tally.iou


def test_the_stride_is_the_one_the_shipped_fpn_upsamples_by():
    import torch
    from torch import nn

    from devolearn_web.training.models import build_fpn_resnet18

    network = build_fpn_resnet18().eval()
    convolution, upsample, activation = network.segmentation_head
    assert isinstance(upsample, nn.Upsample)
    assert isinstance(activation.activation, nn.Identity)
    assert (upsample.scale_factor, upsample.mode, upsample.align_corners) == (
        OUTPUT_STRIDE,
        "bilinear",
        True,
    )
    # The logits before it are a quarter of the input's side.
    with torch.no_grad():
        features = network.decoder(network.encoder(torch.zeros(1, 1, 128, 128)))
        logits = convolution(features)
    assert logits.shape[-1] == 128 // OUTPUT_STRIDE


def test_a_large_square_is_drawn_almost_exactly():
    labels = np.zeros((SIDE, SIDE), dtype=np.int32)
    labels[12:52, 12:52] = 1
    assert iou(fitted_mask(labels), labels) > 0.97


def test_small_nuclei_are_what_the_grid_draws_worst():
    # One logit per 4x4 pixels: a disc 40 pixels across comes out almost exact wherever it
    # lies, one 7 pixels across is misshapen at some offsets from the grid.
    rows, cols = np.mgrid[:SIDE, :SIDE]
    offsets = ((0, 0), (1, 2), (2, 1), (3, 3), (0.5, 1.5))
    mean_iou = {}
    for radius in (3, 12):
        labels = np.stack(
            [((rows - 30 - dy) ** 2 + (cols - 30 - dx) ** 2 <= radius**2) for dy, dx in offsets]
        ).astype(np.int32)
        fitted = fit_output_grid(labels > 0, steps=200) >= 0.5
        pairs = zip(fitted, labels, strict=True)
        mean_iou[radius] = np.mean([iou(mask, label) for mask, label in pairs])
    assert mean_iou[12] > 0.98
    assert mean_iou[3] < 0.96


def test_the_ideal_split_gives_each_pixel_its_nearest_reference_object():
    reference = np.zeros((8, 8), dtype=np.int32)
    reference[1:3, 1:3] = 1
    reference[5:7, 5:7] = 2
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:4, 0:4] = True  # around object 1
    mask[6, 7] = True  # beside object 2
    split = ideal_split(mask, reference)
    assert set(np.unique(split[0:4, 0:4])) == {1}
    assert split[6, 7] == 2
    assert (split[~mask] == 0).all()
    assert not ideal_split(mask, np.zeros_like(reference)).any()


def test_perfect_maps_score_one_and_merged_ones_lose_only_the_apps_split():
    touching = squares(0)  # no gap: one blob to the threshold, two reference objects
    apart = squares(8)
    references = np.stack([touching, apart])
    probabilities = (references > 0).astype(np.float32)
    scores = score_fitted_maps("membrane", probabilities, references, ["slice", "projection"])
    assert scores["iou"] == pytest.approx(1.0)
    assert scores["seg_ideal_split"] == pytest.approx(1.0)
    # The app's split finds one seed on the flat ridge of the touching pair (a 20x40 block),
    # so one square goes unmatched; the ideal split still parts them. The separate pair is
    # perfect either way.
    touching_scores = scores["by_kind"]["slice"]
    assert touching_scores["seg"] == pytest.approx(0.5)
    assert touching_scores["seg_ideal_split"] == pytest.approx(1.0)
    assert touching_scores["count_error_percent"] == pytest.approx(50.0)
    assert scores["by_kind"]["projection"]["seg"] == pytest.approx(1.0)


@pytest.fixture
def nucleus_workspace(tiny_models_dir: Path, tmp_path: Path) -> Workspace:
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    workspace = Workspace("nucleus", tmp_path / "data", tmp_path / "runs", models_dir)
    samples = []
    for gap in (1, 8):
        labels = np.zeros((256, 256), dtype=np.int32)
        labels[64:192, 64:192] = np.kron(squares(gap), np.ones((2, 2), dtype=np.int32))
        samples.append(("test", (labels > 0).astype(np.float32), labels))
    write_processed_samples(workspace, samples)
    return workspace


def test_the_command_writes_its_record_and_the_card_keeps_it(nucleus_workspace: Workspace):
    record = measure_ceiling(nucleus_workspace, steps=100)
    assert record["images"] == 2
    assert 0.5 < record["iou"] <= 1.0
    assert record["seg_ideal_split"] >= record["seg"] - 1e-9
    saved = json.loads(nucleus_workspace.ceiling_record.read_text())
    assert saved["index_sha256"] == record["index_sha256"]
    assert recorded_ceiling(nucleus_workspace) == saved
    # A new index (new test labels) makes the record stale: the card must not show it.
    nucleus_workspace.index_csv.write_text(nucleus_workspace.index_csv.read_text() + "\n")
    assert recorded_ceiling(nucleus_workspace) is None


def test_lineage_has_no_ceiling(tmp_path: Path):
    workspace = Workspace("lineage", tmp_path / "data", tmp_path / "runs", tmp_path / "models")
    with pytest.raises(ValueError, match="segmentation models only"):
        measure_ceiling(workspace)


def test_a_new_evaluation_keeps_the_ceiling_in_the_card(nucleus_workspace: Workspace):
    from devolearn_web.training.ceiling import put_ceiling_in_card
    from devolearn_web.training.evaluate import update_card_metrics

    card_path = nucleus_workspace.card_path
    assert put_ceiling_in_card(nucleus_workspace, {"seg": 0.5, "split": "test"})
    sha256 = json.loads(card_path.read_text())["sha256"]
    metrics = {"sha256": sha256, "test": {"seg": 0.4}, "targets": {}, "threshold": 0.5}
    assert update_card_metrics(nucleus_workspace, metrics)
    card = json.loads(card_path.read_text())
    assert card["metrics"]["test"] == {"seg": 0.4}
    assert card["metrics"]["ceiling"] == {"seg": 0.5, "split": "test"}


def test_a_card_written_from_the_run_records_carries_the_ceiling(nucleus_workspace: Workspace):
    from devolearn_web.training.run_records import metrics_record

    measure_ceiling(nucleus_workspace, steps=20)
    metrics = {"sha256": "a" * 64, "test": {"seg": 0.4}, "targets": {}}
    nucleus_workspace.metrics_json.write_text(json.dumps(metrics))
    assert metrics_record(nucleus_workspace, "a" * 64)["ceiling"]["images"] == 2
    assert metrics_record(nucleus_workspace, "b" * 64) == {}  # metrics of another file
