"""Score a training checkpoint of any segmentation network on the test split, as `evaluate` does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from devolearn_web.file_digest import file_sha256
from devolearn_web.training.checkpoints import load_checkpoint
from devolearn_web.training.evaluate import evaluate_segmentation
from devolearn_web.training.layout import Workspace
from devolearn_web.training.loop import resolve_device
from devolearn_web.training.models import build_network
from devolearn_web.training.specs import get_spec


class TorchRunner:
    """Runs a logit network like `OnnxModel.run`: float32 N x C x H x W in, probabilities out."""

    def __init__(self, network: nn.Module, device: torch.device):
        self.network = network.to(device).eval()
        self.device = device

    @torch.no_grad()
    def run(self, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
        outputs = []
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
            logits = self.network(batch.to(self.device, torch.float32))
            outputs.append(torch.sigmoid(logits).float().cpu().numpy())
        return np.concatenate(outputs)


def load_checkpoint_network(model: str, checkpoint: Path) -> tuple[nn.Module, dict]:
    """The checkpoint's network (whichever `--network` trained it) in float32, and its record."""
    saved = load_checkpoint(checkpoint)
    hyperparameters = saved.get("hyperparameters", {})
    network = build_network(model, hyperparameters.get("network"))
    # Checkpoints that travel back from a GPU machine may hold float16 weights.
    network.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()}
    )
    return network, saved


def score_checkpoint(
    workspace: Workspace,
    checkpoint: Path | None,
    threshold: float,
    device: str = "cpu",
    threads: int = 2,
) -> dict:
    """Test-split IoU, Dice, SEG and count error of a checkpoint; written to the run folder."""
    if not get_spec(workspace.model).is_segmentation:
        raise ValueError("score-checkpoint scores segmentation models; use evaluate for lineage")
    checkpoint = checkpoint or workspace.best_checkpoint
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint} not found; run train first")
    torch.set_num_threads(threads)
    network, saved = load_checkpoint_network(workspace.model, checkpoint)
    started = time.monotonic()
    test = evaluate_segmentation(
        workspace.model,
        TorchRunner(network, resolve_device(device)),
        workspace.index_csv,
        threshold,
    )
    record = {
        "checkpoint": checkpoint.as_posix(),
        "checkpoint_sha256": file_sha256(checkpoint),
        "network": saved.get("hyperparameters", {}).get("network", "the model's own"),
        "steps": saved.get("state", {}).get("step"),
        "epoch": saved.get("state", {}).get("epoch"),
        "threshold": threshold,
        "index_sha256": file_sha256(workspace.index_csv),
        "seconds": round(time.monotonic() - started, 1),
        "test": test,
    }
    out = workspace.run_dir / f"checkpoint_scores_{checkpoint.stem}_{threshold:g}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record
