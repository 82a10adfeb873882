"""The lineage count calibration: the isotonic fit (NumPy, in the fast suite), and the calibrate
step on tiny data (PyTorch: marked training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devolearn_web.lineage_counts import calibration_problem, lineage_counts
from devolearn_web.training.isotonic import fit_calibration, isotonic_knots
from devolearn_web.training.specs import LINEAGE_MAXIMA, LINEAGES


def test_adjacent_violators_are_pooled_into_their_mean():
    x, y = isotonic_knots(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 3, 2, 4]))
    np.testing.assert_allclose(x, [1.0, 2.5, 4.0])
    np.testing.assert_allclose(y, [1.0, 2.5, 4.0])


def test_knots_increase_whatever_the_data():
    rng = np.random.default_rng(0)
    raw = np.round(rng.uniform(0, 16, 500), 1)  # many ties in x
    x, y = isotonic_knots(raw, np.clip(np.rint(raw + rng.normal(0, 2, 500)), 0, 16))
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)


def test_one_block_still_gives_a_curve():
    x, y = isotonic_knots(np.array([5.0, 4.0, 3.0]), np.array([1, 2, 3]))
    assert len(x) == 2 and y[0] == y[1] == 2.0


def test_a_network_that_compresses_its_range_is_read_back_onto_the_truth():
    rng = np.random.default_rng(1)
    truth = rng.choice([1, 2, 4, 8, 16], size=(2000, len(LINEAGES))) * (
        np.asarray(LINEAGE_MAXIMA) / 16
    )
    truth = np.rint(truth).astype(int)
    # Pulled towards the middle of each range, as a sigmoid trained by MSE does, plus noise.
    middle = np.asarray(LINEAGE_MAXIMA) / 2
    raw = middle + 0.8 * (truth - middle) + rng.normal(0, 0.05, truth.shape) * middle
    calibration = fit_calibration(np.clip(raw, 0, None), truth)
    assert calibration_problem(calibration, LINEAGES) is None
    scaled = np.clip(raw, 0, None) / np.asarray(LINEAGE_MAXIMA)
    before = np.abs(lineage_counts(scaled, LINEAGES, LINEAGE_MAXIMA) - truth).mean()
    after = np.abs(lineage_counts(scaled, LINEAGES, LINEAGE_MAXIMA, calibration) - truth).mean()
    assert after < 0.5 * before


@pytest.mark.training
def test_calibrate_fits_on_train_and_the_card_reads_counts_through_it(workspace_factory, tmp_path):
    pytest.importorskip("torch")
    from devolearn_web.training.cards import validate_card
    from devolearn_web.training.cli import main

    workspace = workspace_factory("lineage")
    common = ["--model", "lineage", "--data-root", str(workspace.data_root)]
    common += ["--runs-root", str(workspace.runs_root), "--models-dir", str(workspace.models_dir)]
    common += ["--docs-images-dir", str(workspace.docs_images_dir)]
    train = ["--max-steps", "2", "--batch-size", "2", "--validation-limit", "2", "--no-bf16"]
    no_samples = ["--samples-dir", str(tmp_path / "no_samples")]
    assert main(["train", *common, *train]) == 0
    assert main(["export", *common]) == 0
    assert main(["calibrate", *common, *no_samples]) == 0

    card = json.loads(workspace.card_path.read_text())
    record = json.loads(workspace.calibration_record.read_text())
    assert validate_card(card) == []
    assert card["output"]["calibration"] == record["calibration"]
    assert record["calibration"]["fitted_on"] == "train split, 6 images"
    assert set(card["metrics"]["test"]["uncalibrated"]) >= {"mae", "max_mae_percent_of_maximum"}
    # A later `evaluate` and `card` of the same file keep the curve and its metrics.
    assert main(["evaluate", *common, *no_samples]) == 0
    assert main(["card", *common]) == 0
    rewritten = json.loads(workspace.card_path.read_text())
    assert rewritten["output"]["calibration"] == record["calibration"]
    assert "uncalibrated" in rewritten["metrics"]["test"]


@pytest.mark.training
def test_segmentation_models_are_not_calibrated(workspace_factory):
    from devolearn_web.training.calibrate import record_calibration

    with pytest.raises(ValueError, match="lineage model"):
        record_calibration(workspace_factory("nucleus", preprocess_size=None))
