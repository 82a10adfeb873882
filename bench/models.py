"""Which model files a benchmark serves: the folder as shipped, and a float32-only copy of it."""

from __future__ import annotations

import json
from pathlib import Path

from devolearn_web.registry import int8_section_to_serve


def read_card(models_dir: Path, name: str) -> dict:
    """The model's card (models/<name>.json)."""
    return json.loads((models_dir / f"{name}.json").read_text(encoding="utf-8"))


def quantized_file(models_dir: Path, name: str) -> Path | None:
    """The int8 file the app serves on this CPU, or None (the float32 file is served)."""
    section = int8_section_to_serve(read_card(models_dir, name))
    if section is None:
        return None
    path = models_dir / str(section.get("file", ""))
    return path if path.is_file() else None


def float_file(models_dir: Path, name: str) -> Path:
    """The float32 file of the model (the card's `file`)."""
    return models_dir / read_card(models_dir, name).get("file", f"{name}.onnx")


def float_only_copy(models_dir: Path, destination: Path) -> Path:
    """A folder serving the same float32 files with every card's `quantized` section removed.

    Model files are linked, not copied; only the cards are rewritten.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for path in models_dir.iterdir():
        target = destination / path.name
        if target.exists() or target.is_symlink():
            target.unlink()
        if path.suffix == ".json":
            card = json.loads(path.read_text(encoding="utf-8"))
            card.pop("quantized", None)
            target.write_text(json.dumps(card, indent=2), encoding="utf-8")
        elif path.is_file():
            target.symlink_to(path.resolve())
    return destination
