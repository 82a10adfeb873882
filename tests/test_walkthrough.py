"""Warnings a first-time visitor's own images call for (found walking through the pages)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from devolearn_web.imaging import decode_image
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry

CUT_OFF = "reaches the edge of the image"


@pytest.fixture
def registry(tiny_models_dir):
    return ModelRegistry(tiny_models_dir)


def _decoded(image_maker, pixels: np.ndarray):
    return decode_image(image_maker.encode(image_maker.uint8(pixels)))


def test_a_cut_off_embryo_is_warned_about_on_the_lineage_model(registry, image_maker):
    """A crop through the embryo read as '93 cells in all' with no word of doubt."""
    whole = image_maker.disks((140, 200), image_maker.five_disks, 12)
    cut = whole[:, 25:]  # the left column of nuclei cut through
    assert not any(
        CUT_OFF in text
        for text in predict(registry, "lineage", _decoded(image_maker, whole)).warnings
    )
    warnings = predict(registry, "lineage", _decoded(image_maker, cut)).warnings
    assert any(CUT_OFF in text and "whole embryo" in text for text in warnings), warnings


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_a_cut_off_embryo_is_no_warning_for_segmentation(registry, image_maker, name):
    """Outlining the nuclei or cells of a crop is a fair use of the segmentation models."""
    cut = image_maker.disks((140, 200), image_maker.five_disks, 12)[:, 25:]
    assert not any(
        CUT_OFF in text for text in predict(registry, name, _decoded(image_maker, cut)).warnings
    )


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_a_blank_image_is_not_called_the_other_kind(registry, image_maker, name):
    """A blank frame on the membrane page was said to 'show solid bright blobs'."""
    warnings = predict(registry, name, _decoded(image_maker, np.zeros((200, 200)))).warnings
    assert any("uniform" in text for text in warnings), warnings
    assert not any("it looks like" in text for text in warnings), warnings


def test_the_card_says_its_real_sample_count_is_the_apps(make_app, models_copy):
    """Under a result of 77 nuclei on embryo_sample.png the card line said '87 nuclei on the real
    embryo_sample.png' (the evaluation squashed the file); the evaluation now goes the app's way,
    so the card says plainly that the figure is the app's count."""
    card_path = models_copy / "nucleus.json"
    card = json.loads(card_path.read_text())
    card.setdefault("metrics", {})["real_samples"] = {
        "embryo_sample.png": {"count": 77, "expected_range": [60, 120]}
    }
    card["metrics"]["targets"] = {"seg": {"target": ">= 0.85", "value": 0.661, "met": False}}
    card_path.write_text(json.dumps(card))
    client = make_app(MODELS_DIR=models_copy).test_client()
    html = client.get("/models/nucleus", headers={"Accept": "text/html"}).get_data(as_text=True)
    start = html.index('id="glance-tests"')
    glance = html[start : html.index("</ul>", start)]
    assert "the app counts 77 nuclei (the file uploaded as it is, default settings)" in glance
    assert "can differ" not in glance
    # SEG means nothing to most biologists: the first screen says what it measures.
    assert "SEG <strong>0.661</strong>" in glance
    assert "How well each true object is matched by one object found" in glance
    page = client.get("/nucleus", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "the app counts 77 nuclei on the real embryo_sample.png" in page


def test_the_lineage_input_figure_names_its_dashed_ellipse(registry, image_maker):
    """The lineage page drew a yellow dashed ellipse over the input and said nothing of it."""
    from devolearn_web.figures import build_figures

    image = _decoded(image_maker, image_maker.disks((140, 200), image_maker.five_disks, 12))
    result = predict(registry, "lineage", image)
    assert result.embryo is not None
    figure = build_figures(result, image)["figures"]["input"]
    assert [trace["name"] for trace in figure["data"]] == ["input", "embryo found"]
    assert "dashed: embryo found" in figure["layout"]["title"]["text"]


@pytest.mark.parametrize(("filename", "maker"), [("embryo.czi", "Zeiss CZI"), ("t1.ND2", "Nikon")])
def test_a_microscope_makers_file_is_named_with_the_way_to_a_tiff(client, filename, maker):
    """A .czi was 'a text file, not an image': to a biologist it is their image."""
    data = b"ZISRAWFILE" + bytes(200)
    response = client.post("/api/v1/predict/nucleus", data={"file": (io.BytesIO(data), filename)})
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert maker in error and "Fiji" in error and "save it as a TIFF" in error
    assert "text file" not in error


def test_the_lineage_page_says_which_founders_its_letters_are(client):
    """'(A, E, M, P, C, D, Z)': a biologist knows AB, MS and Z2/Z3, not A, M and Z."""
    html = client.get("/lineage", headers={"Accept": "text/html"}).get_data(as_text=True)
    lead = html[html.index('class="lead"') : html.index("</p>", html.index('class="lead"'))]
    assert "A = AB" in lead and "M = MS" in lead and "Z = Z2/Z3" in lead
