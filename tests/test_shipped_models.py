"""The models in models/ as shipped: valid cards, matching files, and the app agreeing with them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from devolearn_web.imaging import decode_image
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry
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


# What the real samples hold, counted by eye (no ground truth exists): embryo_sample.png about
# 90 nuclei (shared/samples/README.md), seg_sample.jpg about 5 cells cut by the slice.
REAL_SAMPLE_RANGES = {
    "nucleus": ("embryo_sample.png", 60, 120),
    "lineage": ("embryo_sample.png", 50, 150),
    "membrane": ("seg_sample.jpg", 4, 7),
}


@pytest.mark.parametrize("name", NAMES)
def test_the_app_counts_the_real_sample_within_its_range(name, shipped_registry, real_sample):
    sample, low, high = REAL_SAMPLE_RANGES[name]
    path = real_sample(sample)
    result = predict(shipped_registry, name, decode_image(path.read_bytes(), path.name))
    served = result.total if name == "lineage" else result.count
    assert low <= served <= high


@pytest.mark.parametrize("name", NAMES)
def test_the_card_records_the_apps_answer_on_its_real_sample(name, shipped_registry, real_sample):
    """The card said 87 nuclei and 116 cells on embryo_sample.png where the app gives 77 and 111:
    a card's real-sample figure is what a visitor gets by uploading that file."""
    sample = REAL_SAMPLE_RANGES[name][0]
    path = real_sample(sample)
    result = predict(shipped_registry, name, decode_image(path.read_bytes(), path.name))
    recorded = card_of(name)["metrics"]["real_samples"][sample]
    if name == "lineage":
        assert (recorded["populations"], recorded["total"]) == (result.populations, result.total)
    else:
        assert recorded["count"] == result.count
