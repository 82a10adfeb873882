"""Optimised copies of the model files: made once per machine, same answers, safe fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from devolearn_web import optimized_models
from devolearn_web.registry import ModelRegistry


def outputs(registry: ModelRegistry, name: str) -> np.ndarray:
    model = registry.get(name)
    channels = model.card["input"]["channels"]
    tensor = np.random.default_rng(0).random((1, channels, 256, 256), dtype=np.float32)
    return model.session.run(None, {"input": tensor})[0]


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_the_optimised_copy_answers_like_the_file(models_copy, tmp_path, name):
    cache = tmp_path / "cache"
    optimised = ModelRegistry(models_copy, optimized_cache_dir=cache)
    np.testing.assert_allclose(
        outputs(optimised, name), outputs(ModelRegistry(models_copy), name), atol=1e-6
    )
    [copy] = cache.glob("*.onnx")
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    # Another worker (a new registry) reuses it instead of making its own.
    made = copy.stat().st_mtime_ns
    ModelRegistry(models_copy, optimized_cache_dir=cache).get(name)
    assert list(cache.glob("*.onnx")) == [copy] and copy.stat().st_mtime_ns == made


def test_a_different_file_gets_its_own_copy(models_copy, tmp_path):
    cache = tmp_path / "cache"
    registry = ModelRegistry(models_copy, optimized_cache_dir=cache)
    registry.get("membrane")
    registry.get("nucleus")
    assert len(list(cache.glob("*.onnx"))) == 2


def test_when_no_copy_can_be_made_the_file_itself_is_served(models_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(optimized_models, "_OPTIMISE_SCRIPT", "raise SystemExit(3)")
    cache = tmp_path / "cache"
    registry = ModelRegistry(models_copy, optimized_cache_dir=cache)
    np.testing.assert_allclose(
        outputs(registry, "nucleus"), outputs(ModelRegistry(models_copy), "nucleus"), atol=1e-6
    )
    assert not list(cache.iterdir())  # no half-written file left behind


def test_a_damaged_copy_is_discarded_and_the_file_served(models_copy, tmp_path):
    cache = tmp_path / "cache"
    ModelRegistry(models_copy, optimized_cache_dir=cache).get("nucleus")
    [copy] = cache.glob("*.onnx")
    copy.write_bytes(b"not a model")
    registry = ModelRegistry(models_copy, optimized_cache_dir=cache)
    np.testing.assert_allclose(
        outputs(registry, "nucleus"), outputs(ModelRegistry(models_copy), "nucleus"), atol=1e-6
    )
    assert not copy.exists()


def test_the_cache_key_names_the_cpu():
    signature = optimized_models.cpu_signature()
    assert signature == optimized_models.cpu_signature() and len(signature) >= 8
