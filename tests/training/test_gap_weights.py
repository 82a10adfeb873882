"""Loss weights on the gaps between touching objects and around small ones: which pixels, the
weight channel, the loss, the run's record."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")


def two_touching_squares() -> np.ndarray:
    """Objects 1 and 2 side by side with a one-pixel gap (column 4), object 3 far off."""
    labels = np.zeros((10, 12), dtype=np.int32)
    labels[2:7, 1:4] = 1
    labels[2:7, 5:8] = 2
    labels[8:10, 10:12] = 3
    return labels


def test_only_the_gap_between_two_objects_is_found():
    from devolearn_web.training.dataset import pixels_between_objects

    between = pixels_between_objects(two_touching_squares())
    expected = np.zeros((10, 12), dtype=bool)
    # The gap column, and the corners one pixel above and below it that see both squares.
    expected[1:8, 4] = True
    assert (between == expected).all()


def test_a_lone_object_and_its_surroundings_get_weight_one():
    from devolearn_web.training.dataset import loss_weights

    labels = np.zeros((9, 9), dtype=np.int32)
    labels[2:7, 2:7] = 4
    assert (loss_weights(labels, 5.0) == 1.0).all()
    weights = loss_weights(two_touching_squares(), 5.0)
    assert weights[4, 4] == 6.0 and weights[4, 2] == 1.0 and weights[0, 0] == 1.0


def test_the_dataset_adds_a_weight_channel_only_when_asked(workspace_factory):
    from devolearn_web.training.dataset import build_dataset

    workspace = workspace_factory("nucleus")
    plain = build_dataset("nucleus", workspace.index_csv, "train")
    weighted = build_dataset("nucleus", workspace.index_csv, "train", gap_weight=3.0)
    _, target = plain[0]
    _, weighted_target = weighted[0]
    assert target.shape[0] == 1 and weighted_target.shape[0] == 2
    assert torch.equal(weighted_target[:1], target)
    assert set(torch.unique(weighted_target[1]).tolist()) <= {1.0, 4.0}


def test_weights_raise_the_loss_of_a_missed_gap_and_leave_the_rest_alone():
    from devolearn_web.training.dataset import loss_weights
    from devolearn_web.training.losses import DiceBCELoss, overlap_counts

    labels = two_touching_squares()
    mask = torch.from_numpy((labels > 0).astype(np.float32))[None, None]
    weights = torch.from_numpy(loss_weights(labels, 9.0))[None, None]
    filled = mask.clone()
    filled[..., 1:8, 4] = 1.0  # a prediction that fills the gap, merging the squares
    logits = filled * 20 - 10
    plain = DiceBCELoss()(logits, mask)
    weighted = DiceBCELoss()(logits, torch.cat([mask, weights], dim=1))
    assert float(weighted) > float(plain) * 2
    # A right answer costs as little either way, and the tallies read only the mask channel.
    right = mask * 20 - 10
    assert float(DiceBCELoss()(right, torch.cat([mask, weights], dim=1))) < 0.01
    assert overlap_counts(right, torch.cat([mask, weights], dim=1)) == overlap_counts(right, mask)


def test_a_run_records_its_gap_weight_and_refuses_to_resume_with_another(workspace_factory):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import TrainSettings, train

    workspace = workspace_factory("nucleus")
    common = dict(max_steps=1, batch_size=2, learning_rate=1e-3, bf16=False, validation_limit=4)
    train(workspace, TrainSettings(gap_weight=4.0, **common))
    assert load_checkpoint(workspace.checkpoint)["hyperparameters"]["gap_weight"] == 4.0
    with pytest.raises(ValueError, match="gap_weight 4.0 -> 0.0"):
        train(workspace, TrainSettings(gap_weight=0.0, **{**common, "max_steps": 2}))


def test_small_objects_and_their_margin_are_found_large_ones_are_not():
    from devolearn_web.training.dataset import pixels_near_small_objects

    labels = np.zeros((30, 30), dtype=np.int32)
    labels[3:6, 3:6] = 1  # 9 px: small
    labels[15:25, 15:25] = 2  # 100 px: not small
    rows, cols = np.indices(labels.shape)
    # Within 2 steps (4-connected) of the small square: Manhattan distance to it at most 2.
    row_gap = np.maximum(0, np.maximum(3 - rows, rows - 5))
    col_gap = np.maximum(0, np.maximum(3 - cols, cols - 5))
    expected = row_gap + col_gap <= 2
    assert (pixels_near_small_objects(labels) == expected).all()


def test_the_weights_add_up_where_a_gap_and_a_small_object_meet():
    from devolearn_web.training.dataset import loss_weights

    labels = two_touching_squares()  # squares of 15 px: small
    weights = loss_weights(labels, gap_weight=3.0, small_object_weight=5.0)
    assert weights[4, 4] == 9.0  # the gap between them, also within their margin
    assert weights[4, 2] == 6.0 and weights[0, 11] == 1.0  # inside one; far from all


def test_the_small_object_weight_alone_adds_the_channel(workspace_factory):
    from devolearn_web.training.dataset import build_dataset

    workspace = workspace_factory("nucleus")
    weighted = build_dataset("nucleus", workspace.index_csv, "train", small_object_weight=2.0)
    _, target = weighted[0]
    assert target.shape[0] == 2 and set(torch.unique(target[1]).tolist()) <= {1.0, 3.0}


def test_a_run_records_its_small_object_weight_and_refuses_to_resume_with_another(
    workspace_factory,
):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import TrainSettings, train

    workspace = workspace_factory("nucleus")
    common = dict(max_steps=1, batch_size=2, learning_rate=1e-3, bf16=False, validation_limit=4)
    train(workspace, TrainSettings(small_object_weight=5.0, **common))
    saved = load_checkpoint(workspace.checkpoint)["hyperparameters"]
    assert saved["small_object_weight"] == 5.0 and saved["gap_weight"] == 0.0
    with pytest.raises(ValueError, match="small_object_weight 5.0 -> 0.0"):
        train(workspace, TrainSettings(**{**common, "max_steps": 2}))
