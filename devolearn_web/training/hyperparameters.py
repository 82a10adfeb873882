"""Learning rate and batch size: from flags, else from the tuning result, else defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class Hyperparameters:
    """What `train` uses, and where each value came from ("flag", "optuna" or "default")."""

    learning_rate: float
    batch_size: int
    source: str


def read_best_params(path: Path) -> dict | None:
    """The tuning result (best_params.json), or None when no study has finished."""
    return json.loads(path.read_text()) if path.exists() else None


def write_best_params(path: Path, params: dict) -> None:
    """Write the tuning result as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=2) + "\n")


def resolve_hyperparameters(
    learning_rate: float | None, batch_size: int | None, best_params_path: Path
) -> Hyperparameters:
    """Flags win; missing ones come from best_params.json when present, else the defaults."""
    tuned = read_best_params(best_params_path) or {}
    sources = []
    if learning_rate is None:
        learning_rate = tuned.get("learning_rate", DEFAULT_LEARNING_RATE)
        sources.append("optuna" if "learning_rate" in tuned else "default")
    else:
        sources.append("flag")
    if batch_size is None:
        batch_size = tuned.get("batch_size", DEFAULT_BATCH_SIZE)
        sources.append("optuna" if "batch_size" in tuned else "default")
    else:
        sources.append("flag")
    source = sources[0] if sources[0] == sources[1] else "+".join(sources)
    return Hyperparameters(float(learning_rate), int(batch_size), source)
