"""The typed model card: parsed and checked once at load, a bad field named, values typed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from devolearn_web.errors import ModelUnavailable
from devolearn_web.model_cards import ModelCard
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import GridCard


def _drop(section: str, key: str):
    return lambda card: card[section].pop(key)


def _set(value, *path: str):
    def change(card: dict) -> None:
        target = card
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("membrane", _drop("input", "size"), "input.size"),
        ("membrane", _set("1", "input", "channels"), "input.channels"),
        ("membrane", _set(True, "input", "channels"), "input.channels"),
        ("membrane", _drop("output", "default_threshold"), "output.default_threshold"),
        ("membrane", _set("0.5", "output", "default_threshold"), "output.default_threshold"),
        ("nucleus", _drop("input", "working_grid"), "input.working_grid"),
        ("nucleus", _set(3, "input", "name"), "input.name"),
        ("nucleus", _set(4, "version"), "version"),
        ("nucleus", _set(["x"], "title"), "title"),
        ("nucleus", _set(12, "sha256"), "sha256"),
        ("membrane", _set("lineage", "task"), "task"),
        ("lineage", _drop("input", "embryo_fill"), "input.embryo_fill"),
        ("lineage", _drop("output", "maxima"), "output.maxima"),
        ("lineage", _set(["E", "A", "M", "P", "C", "D", "Z"], "output", "lineages"), "lineages"),
        ("lineage", _set({"A": "many"}, "output", "training_range"), "output.training_range"),
        ("lineage", _set({"Q": 5}, "output", "training_range"), "output.training_range"),
    ],
)
def test_a_bad_card_fails_at_load_naming_the_field(models_copy, name, change, field):
    card_path = models_copy / f"{name}.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    change(card)
    card_path.write_text(json.dumps(card), encoding="utf-8")
    registry = ModelRegistry(models_copy)
    with pytest.raises(ModelUnavailable) as raised:
        registry.card(name)
    assert f"{name}.json is not valid" in raised.value.message
    assert field in raised.value.message
    assert registry.status()[name]["problem"] == raised.value.message


def test_the_card_is_typed_and_frozen(tiny_models_dir):
    registry = ModelRegistry(tiny_models_dir)
    nucleus, lineage = registry.card("nucleus"), registry.card("lineage")
    written = json.loads((tiny_models_dir / "nucleus.json").read_text(encoding="utf-8"))
    assert isinstance(nucleus, ModelCard)
    assert nucleus.input.size == tuple(written["input"]["size"])
    assert nucleus.output.default_threshold == written["output"]["default_threshold"]
    assert nucleus.input.working_grid == GridCard.of(written)
    assert nucleus.sha256 == written["sha256"] and nucleus.file == "nucleus.onnx"
    assert lineage.input.working_grid is None and lineage.output.default_threshold is None
    assert lineage.input.embryo_fill == (0.6, 0.65)
    with pytest.raises(dataclasses.FrozenInstanceError):
        nucleus.file = "other.onnx"  # type: ignore[misc]
    # It still reads as the JSON it came from, for the card page and the API's model list.
    assert dict(nucleus) == written


def test_a_lineage_card_without_a_training_range_gets_the_catalogues(models_copy):
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    del card["output"]["training_range"]
    card_path.write_text(json.dumps(card), encoding="utf-8")
    assert dict(ModelRegistry(models_copy).card("lineage").output.training_range) == {"A": 250}


def test_a_card_is_parsed_once_until_its_file_changes(models_copy, monkeypatch):
    from devolearn_web import registry as registry_module

    parsed = []
    real_parse = registry_module.parse_card
    monkeypatch.setattr(
        registry_module, "parse_card", lambda *args: parsed.append(args[0]) or real_parse(*args)
    )
    registry = ModelRegistry(models_copy)
    first = registry.card("membrane")
    registry.status()  # checks the card and the file again, as /healthz does
    assert registry.card("membrane") is first
    assert parsed.count("membrane") == 1
    card_path = models_copy / "membrane.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["version"] = "9.9.9"
    card_path.write_text(json.dumps(card), encoding="utf-8")
    assert registry.card("membrane").version == "9.9.9"
    assert parsed.count("membrane") == 2
