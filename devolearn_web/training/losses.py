"""Training losses and per-batch validation tallies (torch)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def split_target(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(binary target, per-pixel weights or None) of a target with an optional weight channel."""
    if target.shape[1] == 2:
        return target[:, :1], target[:, 1:]
    return target, None


class DiceBCELoss(nn.Module):
    """Binary cross-entropy on logits plus soft Dice (1 - Dice) on their sigmoid, per batch.

    A target's second channel, when present, weights each pixel's cross-entropy."""

    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Computed in float32 even under bfloat16 autocast: both terms sum over many pixels.
        target, weights = split_target(target.float())
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=weights)
        probability = torch.sigmoid(logits)
        intersection = (probability * target).sum()
        dice = (2.0 * intersection + self.smooth) / (probability.sum() + target.sum() + self.smooth)
        return bce + (1.0 - dice)


class ScaledCountLoss(nn.Module):
    """Mean squared error between sigmoid(logits) and counts / maxima (both (N, 7))."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(torch.sigmoid(logits.float()), target.float())


def build_loss(task: str) -> nn.Module:
    """Dice + BCE for segmentation, MSE on sigmoid outputs for lineage."""
    if task == "segmentation":
        return DiceBCELoss()
    if task == "lineage":
        return ScaledCountLoss()
    raise ValueError(f"unknown task {task!r}; choose segmentation or lineage")


@torch.no_grad()
def overlap_counts(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5):
    """(intersection, predicted, reference) pixel counts of a batch at a probability threshold."""
    predicted = torch.sigmoid(logits.float()) >= threshold
    reference = split_target(target)[0] > 0.5
    return (
        float((predicted & reference).sum()),
        float(predicted.sum()),
        float(reference.sum()),
    )
