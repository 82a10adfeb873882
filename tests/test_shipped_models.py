"""The models in models/ as shipped: valid cards, matching files, and the app agreeing with them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from devolearn_web.imaging import decode_image
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry, int8_section_to_serve
from devolearn_web.training.cards import validate_card

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
NAMES = ("membrane", "nucleus", "lineage")


def card_of(name: str) -> dict:
    return json.loads((MODELS_DIR / f"{name}.json").read_text())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shipped_registry() -> ModelRegistry:
    return ModelRegistry(MODELS_DIR)


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_card_is_valid_and_names_its_files(name):
    card = card_of(name)
    assert validate_card(card) == []
    assert sha256_of(MODELS_DIR / card["file"]) == card["sha256"]
    quantized = card.get("quantized")
    if quantized:
        assert sha256_of(MODELS_DIR / quantized["file"]) == quantized["sha256"]
    assert card["training_data"]["simulated"] is True
    assert "SIMULATED" in card["training_data"]["description"]


@pytest.mark.parametrize("name", NAMES)
def test_the_app_counts_the_real_sample_as_the_card_records(name, shipped_registry, real_sample):
    """The card's real-sample figure was measured on the float32 file by the evaluation; the
    app counts on the same 256x256 grid, so only an int8 file may move it, and only a little."""
    recorded = card_of(name)["metrics"]["real_samples"]
    ((sample, figures),) = recorded.items()
    path = real_sample(sample)
    result = predict(shipped_registry, name, decode_image(path.read_bytes(), path.name))
    served = result.total if name == "lineage" else result.count
    expected = figures["total"] if name == "lineage" else figures["count"]
    quantized = int8_section_to_serve(shipped_registry.get(name).card) is not None
    allowed = max(2, round(0.05 * expected)) if quantized else 0
    assert abs(served - expected) <= allowed, (served, expected)
