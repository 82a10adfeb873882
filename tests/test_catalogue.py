"""The model catalogue: the one list of models that routes, pages, OpenAPI and training follow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devolearn_web.catalogue import (
    CATALOGUE,
    LINEAGE_MAXIMA,
    LINEAGE_ORDER,
    MODEL_NAMES,
    TRAINING_RANGE,
    entry,
)
from devolearn_web.errors import UnknownModel
from devolearn_web.examples import EXAMPLES, find_example
from devolearn_web.figures import SEGMENTATION_FIGURES
from devolearn_web.model_cards import parse_card

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPOSITORY_ROOT / "models"


def test_the_catalogue_lists_exactly_the_models_shipped():
    cards = {path.stem for path in SHIPPED_MODELS.glob("*.json")}
    networks = {path.name.split(".")[0] for path in SHIPPED_MODELS.glob("*.onnx")}
    assert set(MODEL_NAMES) == cards == networks


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_shipped_card_agrees_with_its_catalogue_entry(name):
    card = parse_card(name, json.loads((SHIPPED_MODELS / f"{name}.json").read_text()))
    assert card.task == entry(name).task
    if card.task == "lineage":
        assert card.output.lineages == LINEAGE_ORDER
        assert card.output.maxima == tuple(float(value) for value in LINEAGE_MAXIMA)
        assert dict(card.output.training_range) == dict(TRAINING_RANGE)


def test_gallery_examples_and_packages_name_catalogue_models_and_real_files():
    # Which example suits which model is the example's fact (examples.py), keyed by the
    # catalogue's names; a model renamed in the catalogue must not leave an example behind.
    for example in EXAMPLES:
        assert set(example.models) <= set(MODEL_NAMES), example.filename
    for name, model in CATALOGUE.items():
        assert (REPOSITORY_ROOT / "static" / "examples" / model.package.example).is_file()
        assert name in find_example(model.package.example).models
        assert len(model.package.output) <= 128  # BioImage.IO's limit on a tensor description
        assert bool(model.package.objects) == model.is_segmentation


def test_an_unknown_model_name_lists_the_valid_names():
    with pytest.raises(UnknownModel) as raised:
        entry("histone")
    assert "'histone'" in raised.value.message
    assert all(name in raised.value.message for name in MODEL_NAMES)


def test_an_unknown_model_page_is_a_404_listing_the_models(client):
    response = client.get("/models/histone")
    assert response.status_code == 404
    assert all(name in response.get_data(as_text=True) for name in MODEL_NAMES)


def test_every_segmentation_entry_names_figures_that_have_a_builder():
    for model in CATALOGUE.values():
        if model.is_segmentation:
            assert model.figures in SEGMENTATION_FIGURES, model.name
            assert model.split is not None, model.name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_3d_and_tracking_controls_show_where_the_entry_assembles_nuclei(client, name):
    html = client.get(f"/{name}").get_data(as_text=True)
    assert ('id="assembly-controls"' in html) is entry(name).assembles_nuclei
    assert any(model.assembles_nuclei for model in CATALOGUE.values())


def test_training_specs_cover_exactly_the_catalogue():
    from devolearn_web.training.specs import MODEL_SPECS

    assert tuple(MODEL_SPECS) == MODEL_NAMES
    for name, spec in MODEL_SPECS.items():
        assert (spec.title, spec.task) == (entry(name).title, entry(name).task)


# A model added to the catalogue alone: everything that lists the models must list it too.
ADDED_MODEL_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    from types import MappingProxyType

    import devolearn_web.catalogue as catalogue

    words = dataclasses.replace(catalogue.CATALOGUE["nucleus"].page, heading="Histone spots")
    added = dataclasses.replace(catalogue.CATALOGUE["nucleus"], name="histone", page=words)
    catalogue.CATALOGUE = MappingProxyType({**catalogue.CATALOGUE, "histone": added})
    catalogue.MODEL_NAMES = tuple(catalogue.CATALOGUE)
    catalogue.SEGMENTATION_MODELS = (*catalogue.SEGMENTATION_MODELS, "histone")

    from devolearn_web import create_app
    from devolearn_web.openapi import openapi_document

    app = create_app({"TESTING": True, "MODELS_DIR": sys.argv[1], "SECRET_KEY": "test"})
    client = app.test_client()
    page = client.get("/histone")
    home = client.get("/").get_data(as_text=True)
    document = openapi_document()
    model_parameter = document["paths"]["/api/v1/predict/{name}"]["post"]["parameters"][0]
    print(json.dumps({
        "page_status": page.status_code,
        "sidebar": "Histone spots" in home,
        "predict_enum": model_parameter["schema"]["enum"],
        "health": sorted(client.get("/healthz").get_json()["models"]),
    }))
    """
)


def test_routes_pages_openapi_and_health_follow_the_catalogue(tiny_models_dir):
    printed = subprocess.run(
        [sys.executable, "-c", ADDED_MODEL_SCRIPT, str(tiny_models_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY_ROOT,
    ).stdout
    seen = json.loads(printed.strip().splitlines()[-1])
    # The page exists (it says the model is not installed: no histone card in the folder).
    assert seen["page_status"] == 200
    assert seen["sidebar"] is True
    assert seen["predict_enum"] == [*MODEL_NAMES, "histone"]
    assert seen["health"] == sorted([*MODEL_NAMES, "histone"])
