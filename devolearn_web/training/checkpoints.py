"""Saving and loading checkpoints atomically, so an interrupted write never corrupts a run."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write a checkpoint (plain dicts, numbers, strings, tensors) via a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)
