"""A two-step training run on tiny data writes a checkpoint, history and plot, and resumes."""

from __future__ import annotations

import csv

import pytest
from tiny_training import tiny_settings

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")


def history_rows(workspace) -> list[dict]:
    with workspace.history_csv.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_steps_write_checkpoint_history_plot_and_best(workspace_factory):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    result = train(workspace, tiny_settings(bf16=True))
    assert result.steps == 2 and result.stopped_by == "max_steps"
    saved = load_checkpoint(workspace.checkpoint)
    assert saved["state"]["step"] == 2
    assert saved["hyperparameters"]["batch_size"] == 2
    assert saved["hyperparameters"]["bf16"] is True
    assert workspace.best_checkpoint.exists()
    rows = history_rows(workspace)
    assert len(rows) == 1
    assert {"epoch", "train_loss", "val_loss", "val_iou", "val_dice"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["val_iou"]) <= 1.0
    assert workspace.run_training_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Only writing the card ships a plot: a run that is not shipped leaves models/ alone.
    assert not workspace.training_plot.exists()


def test_rerun_resumes_from_the_checkpoint(workspace_factory):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings())
    first = load_checkpoint(workspace.checkpoint)["state_dict"]
    result = train(workspace, tiny_settings(max_steps=4))
    assert result.steps == 4  # a fresh run would stop at 2
    assert len(history_rows(workspace)) == 2
    resumed = load_checkpoint(workspace.checkpoint)["state_dict"]
    assert not torch.equal(first["encoder.conv1.weight"], resumed["encoder.conv1.weight"])
    # Nothing left to do: a further rerun with the same limit trains no more.
    assert train(workspace, tiny_settings(max_steps=4)).stopped_by == "already_done"


def test_resuming_with_other_settings_is_refused(workspace_factory):
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings())
    with pytest.raises(ValueError, match="batch_size 2 -> 4"):
        train(workspace, tiny_settings(batch_size=4, max_steps=4))
    assert train(workspace, tiny_settings(batch_size=4, fresh=True)).steps == 2


def test_tuned_parameters_are_used_when_flags_are_absent(workspace_factory):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.hyperparameters import write_best_params
    from devolearn_web.training.train import train

    workspace = workspace_factory("membrane")
    write_best_params(workspace.best_params, {"learning_rate": 0.004, "batch_size": 3})
    train(workspace, tiny_settings(learning_rate=None, batch_size=None, max_steps=1))
    chosen = load_checkpoint(workspace.checkpoint)["hyperparameters"]
    assert (chosen["learning_rate"], chosen["batch_size"], chosen["source"]) == (
        0.004,
        3,
        "optuna",
    )


def test_lineage_trains_on_mse_and_reports_mae(workspace_factory):
    from devolearn_web.training.train import train

    workspace = workspace_factory("lineage")
    train(workspace, tiny_settings())
    row = history_rows(workspace)[0]
    assert float(row["val_mae_pct_mean"]) >= 0.0
    assert {f"val_mae_{name}" for name in "AEMPCDZ"} <= set(row)


@pytest.mark.parametrize(
    ("model", "setting", "value"),
    [("lineage", "resolution_augmentation", True), ("nucleus", "object_dimming", False)],
)
def test_augmentation_choices_are_recorded_and_kept_on_resume(
    workspace_factory, model, setting, value
):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import train

    workspace = workspace_factory(model)
    train(workspace, tiny_settings(**{setting: value}))
    assert load_checkpoint(workspace.checkpoint)["hyperparameters"][setting] is value
    with pytest.raises(ValueError, match=f"{setting} {value} -> {not value}"):
        train(workspace, tiny_settings(max_steps=4))


@pytest.mark.parametrize(
    ("setting", "value", "default"), [("projection_repeats", 2, 1), ("tight_crops", 0.3, 0.0)]
)
def test_nucleus_view_choices_are_recorded_and_kept_on_resume(
    workspace_factory, setting, value, default
):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings(**{setting: value}))
    assert load_checkpoint(workspace.checkpoint)["hyperparameters"][setting] == value
    with pytest.raises(ValueError, match=f"{setting} {value} -> {default}"):
        train(workspace, tiny_settings(max_steps=4))


def test_epoch_batches_are_reproducible_and_drop_the_ragged_end():
    from devolearn_web.training.loop import epoch_batches

    batches = epoch_batches(10, 4, seed=1, epoch=0)
    assert [len(batch) for batch in batches] == [4, 4]
    assert batches == epoch_batches(10, 4, seed=1, epoch=0)
    assert batches != epoch_batches(10, 4, seed=1, epoch=1)
    assert epoch_batches(3, 8, seed=0, epoch=0)[0] != []


def test_dice_bce_loss_is_small_for_confident_right_answers():
    from devolearn_web.training.losses import DiceBCELoss

    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1.0
    good = DiceBCELoss()(target * 20 - 10, target)
    bad = DiceBCELoss()(10 - target * 20, target)
    assert float(good) < 0.01 < 1.0 < float(bad)


def test_device_choice():
    from devolearn_web.training.loop import resolve_device

    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_learning_rate_decays_along_a_cosine_to_a_small_floor():
    from devolearn_web.training.train import (
        FINAL_LEARNING_RATE_FRACTION,
        cosine_learning_rate_factor,
    )

    assert cosine_learning_rate_factor(0.0) == pytest.approx(1.0)
    assert cosine_learning_rate_factor(0.5) == pytest.approx(0.5 + FINAL_LEARNING_RATE_FRACTION / 2)
    assert cosine_learning_rate_factor(1.0) == pytest.approx(FINAL_LEARNING_RATE_FRACTION)
    assert cosine_learning_rate_factor(3.0) == pytest.approx(FINAL_LEARNING_RATE_FRACTION)
    factors = [cosine_learning_rate_factor(p / 10) for p in range(11)]
    assert factors == sorted(factors, reverse=True)


@pytest.mark.parametrize(
    ("given", "device", "native", "expected"),
    [
        (None, "cpu", False, False),
        (None, "cpu", True, True),
        (None, "cuda", False, True),
        (True, "cpu", False, True),
        (False, "cuda", True, False),
    ],
)
def test_bfloat16_by_default_only_where_it_is_fast(monkeypatch, given, device, native, expected):
    import argparse

    from devolearn_web import cpu_features
    from devolearn_web.training.cli import use_bfloat16

    monkeypatch.setattr(
        cpu_features, "cpu_flags", lambda: frozenset({"avx512_bf16"} if native else set())
    )
    assert use_bfloat16(argparse.Namespace(bf16=given, device=device)) is expected


@pytest.mark.parametrize("frozen", [False, True])
def test_a_step_moves_batch_norm_statistics_unless_they_are_frozen(frozen):
    from torch import nn

    from devolearn_web.training.loop import train_step

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    before, weights = network[1].running_mean.clone(), network[0].weight.detach().clone()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    images, targets = torch.rand(2, 1, 8, 8) * 5, (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss = train_step(network, optimizer, nn.BCEWithLogitsLoss(), images, targets, False, frozen)
    moved = not torch.equal(network[1].running_mean, before)
    assert moved != frozen
    assert loss == loss  # not nan
    # Frozen statistics still pass gradients: the weights before them learn either way.
    assert not torch.equal(network[0].weight.detach(), weights)
