"""The inner training and validation loops, shared by `train` and `tune`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from devolearn_web.training.losses import overlap_counts
from devolearn_web.training.metrics import OverlapTally
from devolearn_web.training.specs import LINEAGES, counts_from_scaled, lineage_maxima


def precision_context(bf16: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when asked (about 2x faster on this CPU), else plain float32."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(name: str) -> torch.device:
    """The torch device to train on: "cpu", "cuda", or "auto" (cuda when there is one)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but PyTorch sees no CUDA GPU here")
    return torch.device(name)


def network_device(network: nn.Module) -> torch.device:
    """The device the network's parameters live on."""
    return next(network.parameters()).device


def build_optimizer(network: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """Adam for the network's parameters (on their device), with the fused kernel."""
    # The fused CPU kernel: about 6 ms a step for FPN-ResNet18 on the 2 cores, against 14 ms
    # for the default per-tensor loop (small next to the 0.45 s of a bfloat16 step).
    return torch.optim.Adam(network.parameters(), lr=learning_rate, fused=True)


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch, the same for the same (seed, epoch): lists of indices."""
    # The last incomplete batch is dropped (batch norm dislikes a batch of one) unless the
    # dataset is smaller than one batch.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    if size < batch_size:
        return [order]
    return [order[i : i + batch_size] for i in range(0, size - batch_size + 1, batch_size)]


def iterate_batches(
    dataset: Dataset, batches: list[list[int]], workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, targets) for each listed batch, in order."""
    yield from DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, worker_init_fn=_single_threaded
    )


def _single_threaded(_worker: int) -> None:
    # Each loader process augments one image at a time; OpenCV's own thread pool in every one
    # of them would only oversubscribe the cores the processes already share.
    import cv2

    cv2.setNumThreads(1)


def train_step(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    bf16: bool,
    freeze_batch_norm: bool = False,
) -> float:
    """One optimiser step on one batch; returns the loss (nan or inf means the run diverged).

    With freeze_batch_norm the BatchNorm layers keep the statistics they came with: a fine-tune
    at batch 8 would otherwise pull them towards noisy batch estimates."""
    device = network_device(network)
    network.train()
    if freeze_batch_norm:
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    optimizer.zero_grad(set_to_none=True)
    with precision_context(bf16, device):
        logits = network(images.to(device))
    loss = loss_fn(logits, targets.to(device))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def validate(
    network: nn.Module,
    dataset: Dataset,
    loss_fn: nn.Module,
    task: str,
    bf16: bool,
    batch_size: int = 8,
    workers: int = 0,
) -> dict[str, float]:
    """Loss and accuracy on a dataset: IoU and Dice at 0.5 (segmentation), MAE (lineage)."""
    device = network_device(network)
    network.eval()
    losses: list[float] = []
    tally = OverlapTally()
    errors: list[np.ndarray] = []
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_single_threaded,
    )
    for images, targets in loader:
        with precision_context(bf16, device):
            logits = network(images.to(device))
        logits = logits.float().cpu()
        losses.append(float(loss_fn(logits, targets)) * len(images))
        if task == "segmentation":
            intersection, predicted, reference = overlap_counts(logits, targets)
            tally.intersection += intersection
            tally.predicted += predicted
            tally.reference += reference
        else:
            scaled = torch.sigmoid(logits).numpy()
            truth = np.rint(targets.numpy() * lineage_maxima())
            errors.append(np.abs(counts_from_scaled(scaled) - truth))
    metrics = {"loss": sum(losses) / len(dataset)}
    if task == "segmentation":
        metrics.update(iou=tally.iou, dice=tally.dice)
    else:
        mae = np.concatenate(errors).mean(axis=0)
        percent = 100.0 * mae / lineage_maxima()
        for name, cells, share in zip(LINEAGES, mae, percent, strict=True):
            metrics[f"mae_{name}"] = float(cells)
            metrics[f"mae_pct_{name}"] = float(share)
        metrics["mae_pct_mean"] = float(percent.mean())
    return metrics


def selection_metric(task: str) -> tuple[str, str]:
    """The validation metric that picks the best checkpoint and trial, and its direction."""
    return ("iou", "maximize") if task == "segmentation" else ("mae_pct_mean", "minimize")


def is_better(value: float, best: float | None, direction: str) -> bool:
    """Whether a validation value beats the best so far (nan never does)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if direction == "maximize" else value < best
