"""The training-metric figure (loss and validation accuracy by epoch) shown on the card page."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict], task: str, path: Path, title: str = "") -> Path:
    """Save loss (train, validation) and IoU/Dice or MAE % by epoch as a PNG."""
    epochs = [float(row["epoch"]) for row in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="training")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_axis.legend()
    if task == "segmentation":
        metric_axis.plot(epochs, [row["val_iou"] for row in history], "o-", label="IoU")
        metric_axis.plot(epochs, [row["val_dice"] for row in history], "s-", label="Dice")
        metric_axis.set(xlabel="epoch", ylabel="score", title="Validation IoU and Dice")
    else:
        metric_axis.plot(epochs, [row["val_mae_pct_mean"] for row in history], "o-", label="mean")
        metric_axis.plot(epochs, [row["val_mae_pct_A"] for row in history], "s-", label="A")
        metric_axis.set(xlabel="epoch", ylabel="% of the lineage maximum", title="Validation MAE")
    metric_axis.legend()
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
