"""The JSON API's contract: every field and its type, models list, OpenAPI, health, headers."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

LINEAGES = ["A", "E", "M", "P", "C", "D", "Z"]
README = Path(__file__).resolve().parent.parent / "README.md"


def post_image(client, name, data, **fields):
    return client.post(
        f"/api/v1/predict/{name}", data={"file": (io.BytesIO(data), "x.png"), **fields}
    )


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_segmentation_answer_has_every_field_with_its_type(client, five_disks_png, name):
    response = post_image(client, name, five_disks_png)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = response.get_json()
    assert answer["model"] == name
    assert (answer["width"], answer["height"]) == (200, 140)
    assert answer["threshold"] == 0.5
    assert answer["count"] == 5 == len(answer["objects"])
    for obj in answer["objects"]:
        assert set(obj) == {"label", "x", "y", "area"}
        assert isinstance(obj["label"], int) and isinstance(obj["area"], int)
        assert isinstance(obj["x"], float) and isinstance(obj["y"], float)
    assert isinstance(answer["notes"], list)
    # Solid disks are nuclei, not membranes: the membrane model says so.
    assert (answer["warnings"] == []) == (name == "nucleus")
    assert answer["scale"] > 0 and answer["scale_source"] == "embryo"
    assert answer["diameter"] > 0  # upload pixels
    assert set(answer["embryo"]) == {"x", "y", "length", "width", "angle_deg", "box"}
    assert set(answer["timings_ms"]) == {
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "total",
    }
    assert all(isinstance(value, int | float) for value in answer["timings_ms"].values())
    prefix = "data:image/png;base64,"
    assert answer["probability"].startswith(prefix)
    probability = Image.open(io.BytesIO(base64.b64decode(answer["probability"][len(prefix) :])))
    assert probability.mode == "L" and probability.size == (200, 140)  # at the upload's size


def test_lineage_answer_has_populations_in_order(client, five_disks_png):
    response = post_image(client, "lineage", five_disks_png)
    assert response.status_code == 200
    answer = response.get_json()
    assert list(answer) == [
        "model",
        "populations",
        "total",
        "outside_training_range",
        "at_end_of_training_range",
        "embryo",
        "notes",
        "warnings",
        "timings_ms",
        "result_id",
        "result_held_s",
    ]
    assert set(answer["embryo"]) == {"x", "y", "length", "width", "angle_deg", "box"}
    assert list(answer["populations"]) == LINEAGES
    assert response.get_data(as_text=True).index('"A"') < response.get_data(as_text=True).index(
        '"Z"'
    )
    assert all(isinstance(answer["populations"][key], int) for key in LINEAGES)
    assert answer["total"] == sum(answer["populations"].values())
    assert answer["outside_training_range"] is False
    assert answer["at_end_of_training_range"] is False


def test_threshold_field_is_used(client, five_disks_png):
    answer = post_image(client, "membrane", five_disks_png, threshold="0.99").get_json()
    assert answer["threshold"] == 0.99


def test_blank_threshold_means_the_default(client, five_disks_png):
    assert (
        post_image(client, "membrane", five_disks_png, threshold="").get_json()["threshold"] == 0.5
    )


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_include_figures_adds_figures_and_the_input(client, five_disks_png, name):
    answer = post_image(client, name, five_disks_png, include="figures").get_json()
    assert isinstance(answer["figures"], dict) and answer["figures"]
    assert answer["input"].startswith("data:image/png;base64,")


def test_colour_upload_notes_say_which_channel(client, image_maker):
    rgba = image_maker.uint8(image_maker.disks((60, 80), [(20, 20), (50, 40)], 8))
    rgba = np.stack([rgba * 0, rgba, rgba * 0, rgba * 0 + 255], axis=-1)
    answer = post_image(client, "nucleus", image_maker.encode(rgba)).get_json()
    assert "green channel" in " ".join(answer["notes"])
    assert answer["count"] == 2


def test_a_two_colour_image_is_analysed_in_the_channel_asked_for(client, image_maker):
    # Nuclei in green (five) and two blobs in red: the automatic choice cannot serve both.
    green = image_maker.uint8(image_maker.disks((140, 200), image_maker.five_disks, 12))
    red = image_maker.uint8(image_maker.disks((140, 200), [(40, 70), (160, 70)], 12))
    data = image_maker.encode(np.stack([red, green, green * 0], axis=-1))
    for channel, count, name in [("0", 2, "red"), ("1", 5, "green")]:
        answer = post_image(client, "nucleus", data, channel=channel).get_json()
        assert answer["count"] == count
        assert f"the {name} channel ({channel}) was used, as asked" in " ".join(answer["notes"])
    download = post_image(client, "nucleus", data, channel="0", format="csv")
    assert download.status_code == 200 and len(download.data.decode().splitlines()) == 1 + 2
    document = client.get("/api/v1/openapi.json").get_json()
    body = document["paths"]["/api/v1/predict/{name}"]["post"]["requestBody"]
    fields = body["content"]["multipart/form-data"]["schema"]["properties"]
    assert "Colour images" in fields["channel"]["description"]


def test_models_lists_every_card(client):
    response = client.get("/api/v1/models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert [card["name"] for card in models] == ["membrane", "nucleus", "lineage"]
    assert all(card["ready"] and card["problem"] is None for card in models)
    assert models[0]["task"] == "segmentation" and models[2]["task"] == "lineage"


def test_openapi_is_a_valid_document_describing_every_path(client):
    from openapi_spec_validator import validate

    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/v1/models",
        "/api/v1/predict/{name}",
        "/api/v1/openapi.json",
        "/healthz",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/result",
        "/api/v1/jobs/{id}/download/{format}",
    }
    job = document["paths"]["/api/v1/jobs"]["post"]
    assert {"202", "400", "413", "415", "503"} <= set(job["responses"])
    assert set(document["components"]["schemas"]["Job"]["properties"]) == {
        "id",
        "model",
        "state",
        "progress",
        "error",
        "result_url",
        "expires_at",
    }
    responses = document["paths"]["/api/v1/predict/{name}"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "503"} <= set(responses)


def test_healthz_is_ok_with_every_model(client):
    answer = client.get("/healthz").get_json()
    assert answer["status"] == "ok"
    assert set(answer["models"]) == {"membrane", "nucleus", "lineage"}
    assert answer["models"]["nucleus"] == {
        "ready": True,
        "loaded": False,
        "problem": None,
        "file": "nucleus.onnx",
    }


def test_healthz_reports_a_missing_model_and_its_api_answers_503(
    make_app, models_copy, five_disks_png
):
    (models_copy / "nucleus.onnx").unlink()
    client = make_app(MODELS_DIR=models_copy).test_client()
    answer = client.get("/healthz").get_json()
    assert answer["status"] == "degraded"
    assert answer["models"]["nucleus"]["ready"] is False
    assert "nucleus.onnx is missing" in answer["models"]["nucleus"]["problem"]
    response = post_image(client, "nucleus", five_disks_png)
    assert response.status_code == 503
    assert "nucleus.onnx is missing" in response.get_json()["error"]
    assert post_image(client, "membrane", five_disks_png).status_code == 200


def test_preload_models_loads_every_model_at_start(make_app):
    app = make_app(PRELOAD_MODELS=True)
    assert app.extensions["devolearn_registry"].load_count == {
        "membrane": 1,
        "nucleus": 1,
        "lineage": 1,
    }


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/models", "/api/v1/nothing-here", "/"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_uploads_never_touch_the_disk(app, client, monkeypatch, image_maker):
    from werkzeug import formparser

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(formparser, "default_stream_factory", refuse)
    monkeypatch.setattr(formparser, "SpooledTemporaryFile", refuse, raising=False)
    noise = np.random.default_rng(0).integers(0, 255, (900, 900), dtype=np.uint8)
    big = image_maker.encode(noise)  # ~800 KB: werkzeug would spool anything over 500 KB
    assert len(big) > 600_000
    # Encoded here because the test client would itself spool a large form to a temporary file.
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(big), "big.png")})
    response = client.post(
        "/api/v1/predict/membrane",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 200


def readme_fields(kind: str) -> list[str]:
    """The top-level field names of the README's `<kind> answers {...}` line, in order."""
    readme = " ".join(README.read_text(encoding="utf-8").split())
    shape = re.search(rf"{kind} answers `(\{{.*?\}})`", readme).group(1)
    names, depth, previous = [], 0, ""
    for token in re.findall(r'"[^"]*"|[{}\[\],:]', shape):
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
        elif token.startswith('"') and depth == 1 and previous in "{,":
            names.append(token.strip('"'))
        previous = token
    return names


@pytest.mark.parametrize(("kind", "name"), [("Segmentation", "nucleus"), ("lineage", "lineage")])
def test_readme_names_every_field_of_the_answer(client, five_disks_png, kind, name):
    answer = post_image(client, name, five_disks_png).get_json()
    assert readme_fields(kind) == list(answer)
