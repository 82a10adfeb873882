"""Seconds per training step under bfloat16 autocast and float32, measured side by side."""

from __future__ import annotations

import statistics
import time

import torch

from devolearn_web.training.loop import build_optimizer, train_step
from devolearn_web.training.losses import build_loss
from devolearn_web.training.models import build_model, input_shape
from devolearn_web.training.specs import LINEAGES, get_spec


def time_training_steps(
    model: str,
    batch_size: int = 8,
    side: int = 256,
    steps: int = 5,
    warmup: int = 2,
    threads: int = 2,
) -> dict:
    """Median, min and max seconds per step for bfloat16 and float32, alternating step by step."""
    # Alternating the two settings in one process makes them share the machine's noise.
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = get_spec(model)
    images = torch.rand(input_shape(model, side, batch_size))
    if spec.is_segmentation:
        targets = (torch.rand(batch_size, 1, side, side) > 0.5).float()
    else:
        targets = torch.rand(batch_size, len(LINEAGES))
    loss_fn = build_loss(spec.task)
    runs = {}
    for bf16 in (True, False):
        network = build_model(model)
        runs[bf16] = (network, build_optimizer(network, 1e-3))
        for _ in range(warmup):
            train_step(*runs[bf16], loss_fn, images, targets, bf16)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(steps):
        for bf16, (network, optimizer) in runs.items():
            started = time.perf_counter()
            train_step(network, optimizer, loss_fn, images, targets, bf16)
            seconds[bf16].append(time.perf_counter() - started)
    result = {
        name: {
            "median_s": round(statistics.median(values), 3),
            "min_s": round(min(values), 3),
            "max_s": round(max(values), 3),
        }
        for name, values in (("bfloat16", seconds[True]), ("float32", seconds[False]))
    }
    result["bfloat16_over_float32"] = round(
        result["bfloat16"]["median_s"] / result["float32"]["median_s"], 2
    )
    result["setup"] = {"model": model, "batch_size": batch_size, "side": side, "steps": steps}
    return result
