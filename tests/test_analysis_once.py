"""Parse once, decide once (issue #19, part 1): a predict request parses its form once and opens
its TIFF once, whether it holds one image or a stack, and whatever the answer's form."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from devolearn_web.options import PredictOptions


@pytest.fixture
def counts(monkeypatch) -> dict[str, int]:
    """How many TiffFiles were opened and how many forms parsed, counted as the request runs."""
    seen = {"tiff_opens": 0, "form_parses": 0}
    real_tiff = tifffile.TiffFile
    real_parse = PredictOptions.from_form.__func__

    class CountedTiffFile(real_tiff):
        def __init__(self, *args, **kwargs):
            seen["tiff_opens"] += 1
            super().__init__(*args, **kwargs)

    def counted_parse(cls, form):
        seen["form_parses"] += 1
        return real_parse(cls, form)

    monkeypatch.setattr(tifffile, "TiffFile", CountedTiffFile)
    monkeypatch.setattr(PredictOptions, "from_form", classmethod(counted_parse))
    return seen


def tiff_of(image_maker, frames: int) -> bytes:
    plane = image_maker.uint8(image_maker.disks((48, 64), [(16, 16), (44, 30)], 6))
    if frames == 1:
        return image_maker.tiff(plane)
    return image_maker.tiff(np.stack([plane] * frames), photometric="minisblack")


def post(client, data: bytes, **fields):
    form = {"file": (io.BytesIO(data), "upload.tif"), **fields}
    return client.post("/api/v1/predict/nucleus", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize("frames", [1, 20])
@pytest.mark.parametrize(
    "fields",
    [{}, {"format": "csv"}, {"include": "figures", "threshold": "0.4"}],
    ids=["json", "csv", "figures"],
)
def test_an_upload_is_opened_once_and_its_form_parsed_once(
    client, image_maker, counts, frames, fields
):
    response = post(client, tiff_of(image_maker, frames), **fields)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    if not fields.get("format") and frames > 1:
        assert len(response.get_json()["frames"]) == frames
    assert counts == {"tiff_opens": 1, "form_parses": 1}


def test_a_streamed_stack_is_opened_once_and_its_form_parsed_once(client, image_maker, counts):
    response = post(client, tiff_of(image_maker, 20), progress="ndjson")
    lines = response.get_data(as_text=True).splitlines()
    assert response.mimetype == "application/x-ndjson" and '"result"' in lines[-1]
    assert counts == {"tiff_opens": 1, "form_parses": 1}


def test_a_frame_of_a_stack_is_opened_once(client, image_maker, counts):
    response = post(client, tiff_of(image_maker, 20), frame="7")
    assert response.get_json()["index"] == 7
    assert counts == {"tiff_opens": 1, "form_parses": 1}
