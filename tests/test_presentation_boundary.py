"""Presentation only where it is needed (issue #19, part 4): the engine never imports the
presentation modules, and the probability PNG is encoded only for an answer that shows it."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest

import devolearn_web
from devolearn_web import pipelines

PACKAGE = Path(devolearn_web.__file__).parent
# The engine: decoding aside, what turns pixels into results.
ENGINE = ("pipelines", "stack_pipeline", "stack_assembly", "segmentation", "scale", "embryo")
# What turns results into an answer's pictures and files.
PRESENTATION = ("downloads", "figures", "figures_tracks", "ctc", "roi_sets")


def imported_modules(module: str) -> set[str]:
    """Every devolearn_web module a module's source imports, at the top or inside a function."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.removeprefix("devolearn_web.") for name in names}


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_imports_no_presentation_module(module):
    assert not imported_modules(module) & set(PRESENTATION)


def test_the_import_check_sees_a_presentation_import():
    # The analysis builds answers, so it imports downloads and figures: the check sees that.
    assert {"downloads", "figures"} <= imported_modules("analysis")


@pytest.fixture
def png_encodings(monkeypatch) -> list[int]:
    """How many probability PNGs were encoded (one entry per encoding)."""
    calls: list[int] = []
    encode = pipelines.probability_to_png

    def counted(probability):
        calls.append(1)
        return encode(probability)

    monkeypatch.setattr(pipelines, "probability_to_png", counted)
    return calls


def post(client, data: bytes, filename: str, **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post("/api/v1/predict/nucleus", data=form, content_type="multipart/form-data")


def test_a_csv_download_of_an_image_encodes_no_png(client, five_disks_png, png_encodings):
    response = post(client, five_disks_png, "disks.png", format="csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert png_encodings == []


def test_a_csv_download_of_a_stack_encodes_no_png(client, image_maker, png_encodings):
    plane = image_maker.uint8(image_maker.disks((64, 64), [(20, 20), (44, 40)], 6))
    stack = image_maker.tiff(np.stack([plane] * 4), photometric="minisblack")
    response = post(client, stack, "stack.tif", format="csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert png_encodings == []


def test_a_json_answer_encodes_its_one_png(client, five_disks_png, png_encodings):
    response = post(client, five_disks_png, "disks.png")
    assert response.get_json()["probability"].startswith("data:image/png;base64,")
    assert png_encodings == [1]


def test_a_long_stack_encodes_no_png(make_app, image_maker, png_encodings):
    client = make_app(MAX_FRAMES_WITH_IMAGES=2).test_client()
    plane = image_maker.uint8(image_maker.disks((64, 64), [(20, 20), (44, 40)], 6))
    stack = image_maker.tiff(np.stack([plane] * 4), photometric="minisblack")
    answer = post(client, stack, "stack.tif").get_json()
    assert len(answer["frames"]) == 4 and "probability" not in answer["frames"][0]
    assert png_encodings == []
