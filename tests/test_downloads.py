"""Downloads read back with tifffile, PIL and csv: the values the JSON answer gives."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

DISKS = [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]


def post(client, model: str, data: bytes, name: str, **fields):
    return client.post(
        f"/api/v1/predict/{model}", data={"file": (io.BytesIO(data), name), **fields}
    )


@pytest.fixture
def disks_png(image_maker) -> bytes:
    return image_maker.encode(image_maker.uint8(image_maker.disks((140, 200), DISKS, 12)))


@pytest.fixture
def disks_stack(image_maker) -> bytes:
    planes = [image_maker.disks((140, 200), DISKS[: count + 1], 12) for count in range(3)]
    return image_maker.tiff(image_maker.uint8(np.stack(planes)), photometric="minisblack")


def test_single_image_downloads_match_the_json(client, disks_png):
    answer = post(client, "nucleus", disks_png, "d.png").get_json()
    labels = tifffile.imread(
        io.BytesIO(post(client, "nucleus", disks_png, "d.png", format="tiff").data)
    )
    assert labels.dtype == np.uint16 and labels.shape == (140, 200)
    assert int(labels.max()) == answer["count"] == 5
    assert [int((labels == obj["label"]).sum()) for obj in answer["objects"]] == [
        obj["area"] for obj in answer["objects"]
    ]
    mask = np.asarray(
        Image.open(io.BytesIO(post(client, "nucleus", disks_png, "d.png", format="png").data))
    )
    assert set(np.unique(mask)) == {0, 255} and ((mask > 0) >= (labels > 0)).all()
    probability = tifffile.imread(
        io.BytesIO(post(client, "nucleus", disks_png, "d.png", format="probability-tiff").data)
    )
    assert probability.dtype == np.float32 and 0 <= probability.min() and probability.max() <= 1
    response = post(client, "nucleus", disks_png, "d.png", format="csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="nucleus-d.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(int(r["label"]), float(r["x"]), float(r["y"]), int(r["area"])) for r in rows] == [
        (o["label"], o["x"], o["y"], o["area"]) for o in answer["objects"]
    ]


def test_threshold_applies_to_the_mask_download(client, disks_png):
    low = np.asarray(
        Image.open(
            io.BytesIO(
                post(client, "membrane", disks_png, "d.png", format="png", threshold="0.1").data
            )
        )
    )
    high = np.asarray(
        Image.open(
            io.BytesIO(
                post(client, "membrane", disks_png, "d.png", format="png", threshold="0.9").data
            )
        )
    )
    assert (low > 0).sum() > (high > 0).sum()


def test_stack_downloads_have_one_page_per_slice(client, disks_stack):
    with tifffile.TiffFile(
        io.BytesIO(post(client, "nucleus", disks_stack, "s.tif", format="tiff").data)
    ) as tiff:
        labels = tiff.asarray()
        assert tiff.is_imagej and tiff.series[0].axes == "ZYX"
    assert labels.shape == (3, 140, 200) and labels.dtype == np.uint16
    assert [int(page.max()) for page in labels] == [1, 2, 3]
    rows = list(
        csv.DictReader(
            io.StringIO(
                post(client, "nucleus", disks_stack, "s.tif", format="csv").get_data(as_text=True)
            )
        )
    )
    assert [int(row["slice"]) for row in rows] == [0, 1, 1, 2, 2, 2]
    bundle = zipfile.ZipFile(
        io.BytesIO(post(client, "nucleus", disks_stack, "s.tif", format="zip").data)
    )
    names = set(bundle.namelist())
    assert {"nucleus-s_labels.tif", "nucleus-s_probability.tif", "nucleus-s_objects.csv"} <= names
    assert sum(name.startswith("masks/") for name in names) == 3


def two_time_points_of_three_slices(image_maker) -> bytes:
    """An ImageJ TZYX hyperstack: 2 time points x 3 slices of 1 to 6 disks."""
    planes = [image_maker.disks((140, 200), DISKS[: count + 1], 12) for count in range(6)]
    return image_maker.tiff(
        image_maker.uint8(np.stack(planes).reshape(2, 3, 140, 200)),
        imagej=True,
        metadata={"axes": "TZYX"},
    )


def test_a_time_lapse_of_z_stacks_downloads_as_a_tzyx_hyperstack(client, image_maker):
    # Two time points of three slices: Fiji and napari must not see six slices.
    hyperstack = two_time_points_of_three_slices(image_maker)
    for fields in ({"format": "tiff"}, {"format": "probability-tiff"}):
        body = post(client, "nucleus", hyperstack, "tz.tif", **fields).data
        with tifffile.TiffFile(io.BytesIO(body)) as tiff:
            assert tiff.is_imagej and tiff.series[0].axes == "TZYX"
            assert tiff.imagej_metadata["frames"] == 2 and tiff.imagej_metadata["slices"] == 3
            pages = tiff.asarray()
        assert pages.shape == (2, 3, 140, 200)
    bundle = zipfile.ZipFile(
        io.BytesIO(post(client, "nucleus", hyperstack, "tz.tif", format="zip").data)
    )
    with tifffile.TiffFile(io.BytesIO(bundle.read("nucleus-tz_labels.tif"))) as tiff:
        labels = tiff.asarray()
        assert tiff.series[0].axes == "TZYX"
    assert [[int(plane.max()) for plane in time] for time in labels] == [[1, 2, 3], [4, 5, 5]]


def test_one_frame_of_a_stack_is_named_with_underscores(client, disks_stack):
    response = post(client, "nucleus", disks_stack, "s.tif", format="tiff", frame="2")
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="nucleus-s_frame2_labels.tif"'
    )


# Upload names and the stem both the server and the page give them (tests/browser checks the
# page's downloadStem against this table too).
TRICKY_NAMES = [
    ("t001.tif", "nucleus-t001"),
    ("a  b.png", "nucleus-a_b"),
    ("a b .c.png", "nucleus-a_b_c"),
    ("embryo.v2.ome.tif", "nucleus-embryo_v2_ome"),
    ("a.", "nucleus-a_"),
    (".png", "nucleus-image"),
    ("", "nucleus-image"),
    ("embryo α β.tif", "nucleus-embryo_"),
    ("ß😀x.png", "nucleus-_x"),
    ("data/run 1/t001.tif", "nucleus-t001"),
    ("C:\\data\\t001.tif", "nucleus-t001"),
    ("a.png\n", "nucleus-a"),
    ("x" * 100 + ".png", "nucleus-" + "x" * 80),
    ("é" * 3 + "y" * 90 + ".png", "nucleus-_" + "y" * 79),
]


@pytest.mark.parametrize("name, stem", TRICKY_NAMES)
def test_upload_names_give_one_download_stem(name, stem):
    from devolearn_web.downloads import safe_stem

    assert safe_stem(name, "nucleus") == stem


def test_lineage_csv_has_a_row_per_frame(client, image_maker):
    planes = [image_maker.disks((64, 64), [(32, 32)], radius, 1.0) for radius in (8, 16, 24)]
    data = image_maker.tiff(
        image_maker.uint8(np.stack(planes)), imagej=True, metadata={"axes": "TYX"}
    )
    answer = post(client, "lineage", data, "t.tif").get_json()
    rows = list(
        csv.reader(
            io.StringIO(post(client, "lineage", data, "t.tif", format="csv").get_data(as_text=True))
        )
    )
    assert rows[0] == ["frame", "A", "E", "M", "P", "C", "D", "Z", "total"]
    assert [[int(v) for v in row] for row in rows[1:]] == [
        [frame["index"], *frame["populations"].values(), frame["total"]]
        for frame in answer["frames"]
    ]


def test_lineage_csv_names_frames_as_the_objects_csv_does(client, image_maker):
    # A time-lapse of z-stacks: each row says its time point and slice, not the flattened index.
    hyperstack = two_time_points_of_three_slices(image_maker)

    def csv_rows(model: str) -> list[list[str]]:
        # Slice by slice on the lineage model too (it projects z by default).
        extra = {"projection": "none"} if model == "lineage" else {}
        body = post(client, model, hyperstack, "tz.tif", format="csv", **extra)
        return list(csv.reader(io.StringIO(body.get_data(as_text=True))))

    populations, objects = csv_rows("lineage"), csv_rows("nucleus")
    assert populations[0][:2] == objects[0][:2] == ["frame", "slice"]
    assert populations[0][2:] == ["A", "E", "M", "P", "C", "D", "Z", "total"]
    assert [row[:2] for row in populations[1:]] == [
        [str(time), str(z)] for time in range(2) for z in range(3)
    ]


@pytest.mark.parametrize(
    "model, fields, message",
    [
        ("lineage", {"format": "tiff"}, "not available for this model"),
        ("nucleus", {"format": "docx"}, "is not known"),
    ],
)
def test_unavailable_formats_are_refused(client, disks_png, model, fields, message):
    response = post(client, model, disks_png, "d.png", **fields)
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_png_of_a_stack_points_to_zip(client, disks_stack):
    response = post(client, "membrane", disks_stack, "s.tif", format="png")
    assert response.status_code == 400 and "format=zip" in response.get_json()["error"]
