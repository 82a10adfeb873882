"""Bad input gets a 4xx and a sentence, never a 500: JSON for the API, a page for browsers."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from devolearn_web.views.api import FORM_FIELDS


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    noise = np.random.default_rng(3).integers(0, 255, (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


def encoded(image_format: str, **options) -> bytes:
    noise = np.random.default_rng(4).integers(0, 255, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_bomb(side: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR claiming side x side pixels, followed by almost nothing."""
    data = bytearray(png_bytes(8, 8))
    ihdr = struct.pack(">II", side, side) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def tiff_bomb(side: int = 60_000) -> bytes:
    """A TIFF whose first page claims side x side pixels (its tags patched after writing)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((4, 4), dtype=np.uint8))
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        tags = [tiff.pages[0].tags[name] for name in ("ImageWidth", "ImageLength")]
        for tag in tags:
            fmt = "<H" if tag.dtype == tifffile.DATATYPE.SHORT else "<I"
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, side)
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


UPLOAD_ERRORS = [
    pytest.param(b"", "x.png", 400, ["empty"], id="zero-bytes"),
    pytest.param(b"just some words\n", "notes.png", 415, ["text file", "PNG, JPEG"], id="text"),
    pytest.param(truncated(png_bytes()), "cut.png", 400, ["truncated"], id="truncated-png"),
    pytest.param(truncated(encoded("JPEG")), "cut.jpg", 400, ["truncated"], id="truncated-jpeg"),
    pytest.param(truncated(encoded("TIFF")), "cut.tif", 400, ["TIFF"], id="truncated-tiff"),
    pytest.param(png_bytes()[:20], "header.png", 400, ["damaged"], id="png-header-only"),
    pytest.param(
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "drawing.svg",
        415,
        ["SVG"],
        id="svg",
    ),
    pytest.param(
        b"<!doctype html><html><body>hi</body></html>", "page.png", 415, ["HTML"], id="html"
    ),
    pytest.param(b"%PDF-1.4\n%...", "paper.pdf", 415, ["PDF"], id="pdf"),
    pytest.param(png_bomb(7_000), "big.png", 413, ["7000 x 7000"], id="png-over-our-limit"),
    pytest.param(png_bomb(10_000), "bomb.png", 413, ["megapixels"], id="png-over-pil-warning"),
    pytest.param(png_bomb(), "bomb.png", 413, ["megapixels"], id="png-decompression-bomb"),
    pytest.param(tiff_bomb(), "bomb.tif", 413, ["megapixels"], id="tiff-decompression-bomb"),
]


@pytest.mark.parametrize(("data", "filename", "status", "words"), UPLOAD_ERRORS)
def test_bad_uploads_get_a_clear_error(client, data, filename, status, words):
    response = client.post("/api/v1/predict/nucleus", data={"file": (io.BytesIO(data), filename)})
    assert response.status_code == status
    answer = response.get_json()
    assert answer["status"] == status
    for word in words:
        assert word in answer["error"]


@pytest.mark.parametrize(
    ("threshold", "words"),
    [
        ("abc", "not a number"),
        ("-1", "between 0 and 1"),
        ("2", "between 0 and 1"),
        ("nan", "between 0 and 1"),
    ],
)
def test_bad_thresholds_are_400(client, five_disks_png, threshold, words):
    response = client.post(
        "/api/v1/predict/membrane",
        data={"file": (io.BytesIO(five_disks_png), "x.png"), "threshold": threshold},
    )
    assert response.status_code == 400
    assert words in response.get_json()["error"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"frame": "abc"}, "whole number"),
        ({"frame": "3"}, "Frame 3 does not exist"),
        ({"channel": "abc"}, "whole number"),
        ({"channel": "-1"}, "0 or more"),
        ({"channel": "1"}, "Channel 1 does not exist: this image has 1 channel(s) (0)."),
        ({"channel": "1", "format": "csv"}, "Channel 1 does not exist"),
        ({"axes": "Q"}, "not valid"),
        ({"frame": "abc", "format": "csv"}, "whole number"),
    ],
)
def test_bad_stack_fields_on_a_single_image_are_400(client, five_disks_png, fields, words):
    response = client.post(
        "/api/v1/predict/nucleus", data={"file": (io.BytesIO(five_disks_png), "x.png"), **fields}
    )
    assert response.status_code == 400
    assert words in response.get_json()["error"]


def test_options_in_the_query_string_are_400_naming_them(client, five_disks_png):
    # A script's ?threshold=0.9 must not be analysed at the default threshold unnoticed.
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/predict/{name}"]["post"]
    assert "query string is not read" in operation["description"]
    body = operation["requestBody"]
    options = set(body["content"]["multipart/form-data"]["schema"]["properties"]) - {"file"}
    assert {"threshold", "format", "channel"} <= options
    for option in sorted(options):
        response = client.post(
            f"/api/v1/predict/nucleus?{option}=1",
            data={"file": (io.BytesIO(five_disks_png), "x.png")},
        )
        error = response.get_json()["error"]
        assert response.status_code == 400, option
        assert f"'{option}'" in error and "form field" in error


@pytest.mark.parametrize(
    ("field", "nearest"), [("thresold", "threshold"), ("chanel", "channel"), ("Format", "format")]
)
def test_a_misspelt_field_is_400_naming_the_nearest(client, five_disks_png, field, nearest):
    # Ignored, the misspelt option would run at its default without a word.
    response = client.post(
        "/api/v1/predict/nucleus", data={"file": (io.BytesIO(five_disks_png), "x.png"), field: "1"}
    )
    error = response.get_json()["error"]
    assert response.status_code == 400
    assert f"'{field}' is not a field" in error and f"did you mean '{nearest}'?" in error
    assert (
        "It reads: file, threshold, diameter, pixel_size_um, include, format, axes, channel, "
        "frame, progress, assemble, track, z_step_um, result, min_area, exclude, projection."
        in error
    )


def test_an_unknown_field_like_no_other_is_400_listing_the_fields(client, five_disks_png):
    response = client.post(
        "/api/v1/predict/nucleus",
        data={"file": (io.BytesIO(five_disks_png), "x.png"), "submit": "Analyse"},
    )
    error = response.get_json()["error"]
    assert response.status_code == 400 and "did you mean" not in error
    assert error.startswith("'submit' is not a field this endpoint reads. It reads: file,")


def test_a_form_part_without_a_name_is_400_not_500(client, five_disks_png):
    # Found by the schemathesis run: werkzeug files such a part under None.
    boundary = "devolearnboundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + five_disks_png
    body += (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data\r\n\r\n0.5\r\n--{boundary}--\r\n"
    ).encode()
    response = client.post(
        "/api/v1/predict/nucleus",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("A form field without a name is not one")


def test_every_field_the_openapi_document_names_is_read(client):
    """The fields the unknown-field 400 accepts are the ones the API description documents."""
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/predict/{name}"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(schema["properties"]) == {"file", *FORM_FIELDS}
    assert "misspelt" in operation["description"]


def test_frame_0_of_a_single_image_is_the_image(client, five_disks_png):
    response = client.post(
        "/api/v1/predict/nucleus",
        data={"file": (io.BytesIO(five_disks_png), "x.png"), "frame": "0", "channel": ""},
    )
    assert response.status_code == 200 and response.get_json()["count"] == 5


def test_every_format_list_of_the_api_names_the_32_bit_tiffs_it_reads(client):
    """The 415 sentence and the API description say 32-bit TIFFs, which are read."""
    scene = np.random.default_rng(5).random((48, 64), dtype=np.float32)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, scene)
    upload = {"file": (io.BytesIO(buffer.getvalue()), "float.tif")}
    assert client.post("/api/v1/predict/nucleus", data=upload).status_code == 200
    refused = client.post(
        "/api/v1/predict/nucleus", data={"file": (io.BytesIO(b"words\n"), "notes.png")}
    )
    document = client.get("/api/v1/openapi.json").get_json()
    predict = document["paths"]["/api/v1/predict/{name}"]["post"]
    fields = predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for sentence in (
        refused.get_json()["error"],
        predict["responses"]["415"]["description"],
        fields["file"]["description"],
    ):
        assert "8, 16 or 32 bit" in sentence, sentence


def test_missing_file_field_is_400(client):
    response = client.post("/api/v1/predict/membrane", data={"threshold": "0.5"})
    assert response.status_code == 400
    assert "field 'file'" in response.get_json()["error"]


def test_unknown_model_is_404_listing_the_models(client, five_disks_png):
    response = client.post(
        "/api/v1/predict/heart", data={"file": (io.BytesIO(five_disks_png), "x.png")}
    )
    assert response.status_code == 404
    assert response.get_json() == {
        "status": 404,
        "error": "There is no model called 'heart'. The models are: membrane, nucleus, lineage.",
    }


def test_upload_over_the_byte_limit_is_413(make_app):
    data = png_bytes()
    client = make_app(MAX_UPLOAD_BYTES=len(data) - 1).test_client()
    response = client.post("/api/v1/predict/membrane", data={"file": (io.BytesIO(data), "x.png")})
    assert response.status_code == 413
    assert "MB" in response.get_json()["error"]


def test_request_over_max_content_length_is_our_413(make_app):
    client = make_app(MAX_UPLOAD_BYTES=1000, MAX_CONTENT_LENGTH=2000).test_client()
    response = client.post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(b"\0" * 5000), "x.png")}
    )
    assert response.status_code == 413
    assert response.get_json()["status"] == 413
    assert "larger than this server accepts" in response.get_json()["error"]


def test_image_over_the_pixel_limit_is_413(make_app):
    client = make_app(MAX_IMAGE_PIXELS=1000).test_client()
    response = client.post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(png_bytes(64, 48)), "x.png")}
    )
    assert response.status_code == 413
    assert "64 x 48" in response.get_json()["error"]


def test_unknown_api_route_and_wrong_method_answer_json(client):
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.get_json()["status"] == 404
    wrong_method = client.get("/api/v1/predict/membrane")
    assert wrong_method.status_code == 405
    assert "HTTP method" in wrong_method.get_json()["error"]


def test_clients_that_prefer_json_get_json_anywhere(client):
    response = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_browsers_get_the_same_sentence_on_a_page(client):
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no page or API endpoint at this address." in response.get_data(as_text=True)


def test_unexpected_errors_are_a_logged_500_in_the_same_shape(app, monkeypatch, five_disks_png):
    from devolearn_web.views import api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "analyse", broken)
    response = app.test_client().post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(five_disks_png), "x.png")}
    )
    assert response.status_code == 500
    assert response.get_json() == {
        "status": 500,
        "error": "Something went wrong on the server; the error has been logged.",
    }


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("diameter", "abc", "typical object"),
        ("diameter", "0", "typical object"),
        ("diameter", "nan", "typical object"),
        ("pixel_size_um", "-1", "micrometres"),
    ],
)
def test_a_scale_field_that_is_not_a_sensible_number_is_400(
    client, five_disks_png, field, value, words
):
    response = client.post(
        "/api/v1/predict/nucleus",
        data={"file": (io.BytesIO(five_disks_png), "x.png"), field: value},
    )
    assert response.status_code == 400
    assert words in response.get_json()["error"]


def test_a_blank_or_automatic_diameter_runs_at_the_found_scale(client, five_disks_png):
    for value in ("", "auto"):
        response = client.post(
            "/api/v1/predict/nucleus",
            data={"file": (io.BytesIO(five_disks_png), "x.png"), "diameter": value},
        )
        assert response.status_code == 200
        assert response.get_json()["scale_source"] != "diameter"


def test_two_early_embryos_in_one_frame_are_a_422_for_the_lineage_model(client):
    """Their four nuclei alone would read as one embryo's, and be counted as one."""
    from tests.conftest import encode_image
    from tests.test_embryo import two_early_embryos_side_by_side

    image = (two_early_embryos_side_by_side() * 255).astype(np.uint8)
    response = client.post(
        "/api/v1/predict/lineage", data={"file": (io.BytesIO(encode_image(image)), "two.png")}
    )
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert "2 embryos, each with its own cytoplasm" in error and "crop it to one embryo" in error


def test_an_image_of_pixel_noise_alone_is_no_embryo_and_no_nuclei(client):
    """A slice beyond the embryo: contrast-stretched, its noise read as 23 nuclei."""
    from tests.conftest import encode_image
    from tests.test_embryo import noise

    data = encode_image((noise((256, 354)) * 255).astype(np.uint8))
    lineage = client.post("/api/v1/predict/lineage", data={"file": (io.BytesIO(data), "n.png")})
    assert lineage.status_code == 422, lineage.get_json()
    assert "nothing that stands out from its own pixel noise" in lineage.get_json()["error"]
    nuclei = client.post("/api/v1/predict/nucleus", data={"file": (io.BytesIO(data), "n.png")})
    assert nuclei.status_code == 200
    answer = nuclei.get_json()
    assert answer["count"] == 0
    sentence = "nothing that stands out from its own pixel noise"
    assert any(sentence in text for text in answer["warnings"])
    assert not any("The model ran at" in text for text in answer["notes"])  # it did not run
    assert not any("framed" in text for text in answer["warnings"])  # nothing was framed
