"""The registry serves a model's int8 file when its card says so, and the float32 file otherwise."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from devolearn_web import cpu_features
from devolearn_web.errors import ModelUnavailable
from devolearn_web.registry import ModelRegistry, quantized_section

INT8_NAME = "nucleus.int8.onnx"


def _stand_in_int8(models_dir: Path) -> str:
    """Put a distinguishable file (the tiny membrane graph) where the int8 nucleus would be."""
    shutil.copyfile(models_dir / "membrane.onnx", models_dir / INT8_NAME)
    return hashlib.sha256((models_dir / INT8_NAME).read_bytes()).hexdigest()


def _set_quantized(models_dir: Path, section: dict | None) -> None:
    path = models_dir / "nucleus.json"
    card = json.loads(path.read_text())
    card.pop("quantized", None)
    if section is not None:
        card["quantized"] = section
    path.write_text(json.dumps(card))


def _served_graph(models_dir: Path) -> str:
    return ModelRegistry(models_dir).get("nucleus").session.get_modelmeta().graph_name


def test_int8_file_is_served_when_the_card_says_serve(models_copy: Path) -> None:
    sha256 = _stand_in_int8(models_copy)
    _set_quantized(models_copy, {"file": INT8_NAME, "sha256": sha256, "serve": True})
    assert _served_graph(models_copy) == "tiny_membrane"


@pytest.mark.parametrize(
    "section",
    [None, {"file": INT8_NAME, "serve": False}, {"file": INT8_NAME}, {"file": "../x.onnx"}],
    ids=["absent", "serve-false", "serve-missing", "not-a-plain-name"],
)
def test_float32_file_is_served_otherwise(models_copy: Path, section: dict | None) -> None:
    _stand_in_int8(models_copy)
    _set_quantized(models_copy, section)
    assert _served_graph(models_copy) == "tiny_nucleus"


@pytest.mark.parametrize(
    ("cpu", "served"),
    [({"avx2", "avx512_vnni"}, "tiny_membrane"), ({"avx2", "fma"}, "tiny_nucleus")],
    ids=["cpu-has-vnni", "cpu-lacks-vnni"],
)
def test_int8_file_needing_cpu_flags_is_served_only_where_the_cpu_has_one(
    models_copy: Path, monkeypatch: pytest.MonkeyPatch, cpu: set, served: str
) -> None:
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset(cpu))
    sha256 = _stand_in_int8(models_copy)
    needs = ["avx512_vnni", "avx_vnni"]
    section = {"file": INT8_NAME, "sha256": sha256, "serve": True, "requires_cpu_flags": needs}
    _set_quantized(models_copy, section)
    registry = ModelRegistry(models_copy)
    expected_file = INT8_NAME if served == "tiny_membrane" else "nucleus.onnx"
    assert registry.status_of("nucleus")["file"] == expected_file  # before loading, as /healthz
    assert registry.get("nucleus").session.get_modelmeta().graph_name == served
    assert registry.status_of("nucleus")["file"] == expected_file


def test_missing_int8_file_falls_back_to_float32(models_copy: Path) -> None:
    _set_quantized(models_copy, {"file": INT8_NAME, "sha256": "0" * 64, "serve": True})
    assert _served_graph(models_copy) == "tiny_nucleus"


def test_int8_file_that_does_not_match_its_sha256_is_refused(models_copy: Path) -> None:
    _stand_in_int8(models_copy)
    _set_quantized(models_copy, {"file": INT8_NAME, "sha256": "0" * 64, "serve": True})
    registry = ModelRegistry(models_copy)
    with pytest.raises(ModelUnavailable, match="does not match its card"):
        registry.get("nucleus")
    assert registry.status_of("nucleus")["ready"] is False


def test_quantized_section_needs_serve_true_and_a_plain_file_name() -> None:
    assert quantized_section({"quantized": {"file": "a.onnx", "serve": True}}) is not None
    assert quantized_section({"quantized": {"file": "a.onnx", "serve": "yes"}}) is None
    assert quantized_section({"quantized": {"file": "dir/a.onnx", "serve": True}}) is None
    assert quantized_section({"quantized": ["a.onnx"]}) is None
    assert quantized_section({}) is None
