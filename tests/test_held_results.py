"""Held results: a result id answers a new threshold, a minimum size, excluded objects and
downloads without the file; min_area and exclude on first answers; lineage z-stack projection."""

from __future__ import annotations

import io

import numpy as np
import pytest

LARGE = [(110, 120), (330, 110), (560, 130), (150, 380)]
SPECKS = [(400, 390), (600, 380)]


@pytest.fixture
def specks_png(image_maker) -> bytes:
    image = np.maximum(
        image_maker.disks((512, 708), LARGE, 45, 1.0), image_maker.disks((512, 708), SPECKS, 8, 1.0)
    )
    return image_maker.encode(image_maker.uint8(image))


def _post(client, fields: dict, data: bytes | None = None, model: str = "membrane"):
    form = dict(fields)
    if data is not None:
        form["file"] = (io.BytesIO(data), "specks.png")
    return client.post(f"/api/v1/predict/{model}", data=form)


def test_a_held_result_answers_without_the_file(client, specks_png) -> None:
    first = _post(client, {"include": "figures"}, specks_png)
    assert first.status_code == 200 and first.json["count"] == 6
    key = first.json["result_id"]
    assert first.json["result_held_s"] == 600

    again = _post(client, {"result": key, "threshold": "0.5", "include": "figures"})
    assert again.status_code == 200
    assert again.json["count"] == 6 and again.json["objects"] == first.json["objects"]
    assert "probability" not in again.json  # the page holds it from the first answer
    assert again.json["input"] == "held-by-page"  # no picture of the upload is kept

    smaller = _post(client, {"result": key, "min_area": "1000"})
    assert smaller.json["count"] == 4
    assert [obj["label"] for obj in smaller.json["objects"]] == [1, 2, 3, 4]
    x, y = LARGE[0]
    fewer = _post(client, {"result": key, "min_area": "1000", "exclude": f"{x},{y}"})
    assert fewer.json["count"] == 3

    csv = _post(client, {"result": key, "min_area": "1000", "exclude": f"{x},{y}", "format": "csv"})
    assert csv.status_code == 200 and len(csv.data.decode().strip().splitlines()) == 1 + 3
    tiff = _post(client, {"result": key, "min_area": "1000", "format": "tiff"})
    import tifffile

    labels = tifffile.imread(io.BytesIO(tiff.data))
    assert int(labels.max()) == 4 and set(np.unique(labels)) == {0, 1, 2, 3, 4}


def test_min_area_and_exclude_apply_to_a_first_answer_and_its_downloads(client, specks_png) -> None:
    answer = _post(client, {"min_area": "1000"}, specks_png)
    assert answer.json["count"] == 4
    csv = _post(client, {"min_area": "1000", "format": "csv"}, specks_png)
    assert len(csv.data.decode().strip().splitlines()) == 1 + 4


def test_a_result_no_longer_held_is_a_410_with_a_sentence(app, client, specks_png) -> None:
    key = _post(client, {}, specks_png).json["result_id"]
    app.extensions["devolearn_result_cache"].clear()
    gone = _post(client, {"result": key, "threshold": "0.3"})
    assert gone.status_code == 410 and "send the file again" in gone.json["error"]


def test_the_cache_holds_no_more_than_its_cap_and_forgets_after_its_time() -> None:
    from devolearn_web.pipelines import NetworkOutput
    from devolearn_web.result_cache import HeldResult, ResultCache, ResultGone

    now = [0.0]
    cache = ResultCache(3_000_000, 60, clock=lambda: now[0])
    assert cache.budget is None

    def held() -> HeldResult:
        zeros = np.zeros((500, 500), np.float32)
        output = NetworkOutput("m", None, None, None, zeros, 1, 1, (), None)
        return HeldResult("m", "segmentation", "s", outputs=[output])

    first, second, third = cache.put(held()), cache.put(held()), cache.put(held())
    with pytest.raises(ResultGone):
        cache.get(first)  # dropped to make room: three 1 MB maps do not fit in 3 MB
    cache.get(second)
    now[0] = 61
    with pytest.raises(ResultGone):
        cache.get(third)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"min_area": "-3"}, "min_area"),
        ({"min_area": "lots"}, "min_area"),
        ({"exclude": "3"}, "exclude"),
        ({"exclude": "1,2,9"}, "frame that does not exist"),
        ({"projection": "mean"}, "projection"),
    ],
)
def test_bad_object_fields_are_400_sentences(client, specks_png, fields, needle) -> None:
    answer = _post(client, fields, specks_png)
    assert answer.status_code == 400 and needle in answer.json["error"]


def test_result_with_a_file_or_a_network_field_is_a_400(client, specks_png) -> None:
    key = _post(client, {}, specks_png).json["result_id"]
    assert _post(client, {"result": key}, specks_png).status_code == 400
    answer = _post(client, {"result": key, "diameter": "30"})
    assert answer.status_code == 400 and "send the file again" in answer.json["error"]


def test_a_lineage_z_stack_is_projected_per_time_point_by_default(client, image_maker) -> None:
    embryo = image_maker.disks((64, 96), [(48, 32)], 20, 0.9)
    stack = np.stack([image_maker.uint8(embryo * (0.5 + z / 10)) for z in range(5)])
    data = image_maker.tiff(stack)
    projected = client.post(
        "/api/v1/predict/lineage", data={"file": (io.BytesIO(data), "z.tif")}
    ).json
    assert projected["frame_count"] == 1 and "projection" in projected["axes"]
    assert any("projected" in note for note in projected["notes"])
    slices = client.post(
        "/api/v1/predict/lineage",
        data={"file": (io.BytesIO(data), "z.tif"), "projection": "none"},
    ).json
    assert slices["frame_count"] == 5
    refused = client.post(
        "/api/v1/predict/membrane",
        data={"file": (io.BytesIO(data), "z.tif"), "projection": "max"},
    )
    assert refused.status_code == 400 and "lineage" in refused.json["error"]
