"""A TIFF's pixel size goes through the API into the TIFF and CSV downloads, or not at all."""

from __future__ import annotations

import csv
import io
import struct
import zipfile

import numpy as np
import pytest
import tifffile

from devolearn_web.calibration import Calibration, read_tiff_calibration

DISKS = [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]
PIXEL_UM = 0.09


def post(client, model: str, data: bytes, name: str, **fields):
    return client.post(
        f"/api/v1/predict/{model}", data={"file": (io.BytesIO(data), name), **fields}
    )


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def written_calibration(body: bytes) -> tuple[Calibration | None, tifffile.TiffFile]:
    """The calibration a download declares, read back the way an upload's is, and its tags."""
    return read_tiff_calibration(body), tifffile.TiffFile(io.BytesIO(body))


@pytest.fixture
def disks(image_maker) -> np.ndarray:
    return image_maker.uint8(image_maker.disks((140, 200), DISKS, 12))


@pytest.fixture
def micrometre_tiff(image_maker, disks) -> bytes:
    """One page with resolution tags in µm (tifffile's ResolutionUnit MICROMETER)."""
    return image_maker.tiff(
        disks, resolution=(1 / PIXEL_UM, 1 / PIXEL_UM), resolutionunit="MICROMETER"
    )


@pytest.fixture
def fiji_stack(image_maker) -> bytes:
    """A 3-slice ImageJ z-stack as Fiji writes one: 0.1 x 0.2 micron pixels, 0.5 micron steps."""
    planes = [image_maker.disks((140, 200), DISKS[: count + 1], 12) for count in range(3)]
    return image_maker.tiff(
        image_maker.uint8(np.stack(planes)),
        imagej=True,
        resolution=(1 / 0.1, 1 / 0.2),
        metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.5},
    )


@pytest.mark.parametrize("fmt", ["tiff", "probability-tiff"])
def test_a_tiff_in_micrometres_keeps_its_pixel_size_in_the_downloads(client, micrometre_tiff, fmt):
    body = post(client, "nucleus", micrometre_tiff, "m.tif", format=fmt).data
    calibration, tiff = written_calibration(body)
    with tiff:
        # What Fiji reads: pixels per unit in the resolution tags, the unit in ImageJ metadata.
        assert tiff.is_imagej and tiff.imagej_metadata["unit"] == "um"
        assert tiff.pages[0].resolution == pytest.approx((1 / PIXEL_UM, 1 / PIXEL_UM))
        assert tiff.asarray().shape == (140, 200)
    assert calibration == Calibration(pytest.approx(PIXEL_UM), pytest.approx(PIXEL_UM), "µm")


def test_the_answer_states_the_pixel_size_once(client, micrometre_tiff):
    answer = post(client, "nucleus", micrometre_tiff, "m.tif").get_json()
    assert answer["calibration"] == {
        "unit": "µm",
        "pixel_width": pytest.approx(PIXEL_UM),
        "pixel_height": pytest.approx(PIXEL_UM),
        "z_spacing": None,
    }
    assert "Pixel size 0.09 µm read from the TIFF: the downloads keep it." in answer["notes"]


def test_an_imagej_stack_keeps_its_pixel_size_and_z_spacing(client, fiji_stack):
    for fmt in ("tiff", "probability-tiff"):
        body = post(client, "nucleus", fiji_stack, "z.tif", format=fmt).data
        calibration, tiff = written_calibration(body)
        with tiff:
            assert tiff.series[0].axes == "ZYX"
            assert tiff.imagej_metadata["spacing"] == pytest.approx(0.5)
        assert calibration == Calibration(
            pytest.approx(0.1), pytest.approx(0.2), "µm", pytest.approx(0.5)
        )
    bundle = zipfile.ZipFile(
        io.BytesIO(post(client, "nucleus", fiji_stack, "z.tif", format="zip").data)
    )
    assert read_tiff_calibration(bundle.read("nucleus-z_labels.tif")).z_spacing == pytest.approx(
        0.5
    )
    assert "area_um2" in bundle.read("nucleus-z_objects.csv").decode().splitlines()[0]
    answer = post(client, "nucleus", fiji_stack, "z.tif").get_json()
    assert answer["calibration"]["z_spacing"] == pytest.approx(0.5)
    assert (
        answer["notes"].count(
            "Pixel size 0.1 x 0.2 µm, z spacing 0.5 µm, read from the TIFF: the downloads keep it."
        )
        == 1
    )
    assert all("calibration" not in frame for frame in answer["frames"])


def test_one_frame_of_a_stack_keeps_the_pixel_size_without_z(client, fiji_stack):
    body = post(client, "nucleus", fiji_stack, "z.tif", format="tiff", frame="1").data
    assert read_tiff_calibration(body) == Calibration(pytest.approx(0.1), pytest.approx(0.2), "µm")


def test_the_csv_adds_position_and_area_in_the_unit(client, fiji_stack):
    rows = csv_rows(post(client, "nucleus", fiji_stack, "z.tif", format="csv"))
    assert list(rows[0]) == [
        "slice", "label", "x", "y", "area", "x_um", "y_um", "z_um", "area_um2"
    ]  # fmt: skip
    assert len(rows) == 6
    for row in rows:
        assert float(row["x_um"]) == pytest.approx(float(row["x"]) * 0.1, rel=1e-5)
        assert float(row["y_um"]) == pytest.approx(float(row["y"]) * 0.2, rel=1e-5)
        assert float(row["z_um"]) == pytest.approx(int(row["slice"]) * 0.5)
        assert float(row["area_um2"]) == pytest.approx(int(row["area"]) * 0.1 * 0.2, rel=1e-5)


def test_the_single_image_csv_adds_x_y_and_area_in_micrometres(client, micrometre_tiff):
    rows = csv_rows(post(client, "nucleus", micrometre_tiff, "m.tif", format="csv"))
    assert list(rows[0]) == ["label", "x", "y", "area", "x_um", "y_um", "area_um2"]
    first = rows[0]
    assert float(first["area_um2"]) == pytest.approx(int(first["area"]) * PIXEL_UM**2, rel=1e-5)
    assert float(first["x_um"]) == pytest.approx(float(first["x"]) * PIXEL_UM, rel=1e-5)


@pytest.mark.parametrize(
    "unit, column",
    [("nm", "area_nm2"), ("\\u00B5m", "area_um2"), ("micrometre", "area_um2"), ("mm", "area_mm2")],
)
def test_imagej_unit_spellings_name_the_columns(client, image_maker, disks, unit, column):
    data = image_maker.tiff(disks, imagej=True, resolution=(4.0, 4.0), metadata={"unit": unit})
    header = csv_rows(post(client, "nucleus", data, "u.tif", format="csv"))[0]
    assert column in header


def test_standard_centimetre_tags_are_read_in_micrometres(image_maker, disks):
    data = image_maker.tiff(
        disks, resolution=(1e4 / PIXEL_UM, 1e4 / PIXEL_UM), resolutionunit="CENTIMETER"
    )
    calibration = read_tiff_calibration(data)
    assert calibration.unit == "µm" and calibration.pixel_width == pytest.approx(PIXEL_UM)


def uncalibrated_uploads(image_maker, disks) -> dict[str, bytes]:
    return {
        "PNG": image_maker.encode(disks),
        "plain TIFF (tifffile's 1 pixel per unit-less unit)": image_maker.tiff(disks),
        "PIL TIFF (no resolution tags)": image_maker.encode(disks, "TIFF"),
        "72 dpi TIFF from an image editor": image_maker.encode(disks, "TIFF", dpi=(72, 72)),
        "ImageJ TIFF without a unit": image_maker.tiff(disks, imagej=True),
    }


def test_an_uncalibrated_upload_gives_the_old_files(client, image_maker, disks):
    expected_labels = None
    for kind, data in uncalibrated_uploads(image_maker, disks).items():
        answer = post(client, "nucleus", data, "d.tif").get_json()
        assert "calibration" not in answer, kind
        assert not any("Pixel size" in note for note in answer["notes"]), kind
        body = post(client, "nucleus", data, "d.tif", format="tiff").data
        with tifffile.TiffFile(io.BytesIO(body)) as tiff:
            assert not tiff.is_imagej, kind
            labels = tiff.asarray()
        # The bytes tifffile wrote for a plain 16-bit label page before calibrations existed.
        old = io.BytesIO()
        tifffile.imwrite(old, labels, photometric="minisblack")
        assert body == old.getvalue(), kind
        expected_labels = labels if expected_labels is None else expected_labels
        assert (labels == expected_labels).all(), kind
        rows = csv_rows(post(client, "nucleus", data, "d.tif", format="csv"))
        assert list(rows[0]) == ["label", "x", "y", "area"], kind


def test_an_uncalibrated_stack_gives_the_old_hyperstack(client, image_maker):
    planes = [image_maker.disks((140, 200), DISKS[: count + 1], 12) for count in range(3)]
    data = image_maker.tiff(
        image_maker.uint8(np.stack(planes)), imagej=True, metadata={"axes": "ZYX"}
    )
    body = post(client, "nucleus", data, "s.tif", format="tiff").data
    with tifffile.TiffFile(io.BytesIO(body)) as tiff:
        labels = tiff.asarray()
        metadata = tiff.imagej_metadata
    assert "unit" not in metadata and "spacing" not in metadata
    old = io.BytesIO()
    with tifffile.TiffWriter(old, imagej=True) as writer:
        writer.write(labels, metadata={"axes": "ZYX"})
    assert body == old.getvalue()
    rows = csv_rows(post(client, "nucleus", data, "s.tif", format="csv"))
    assert list(rows[0]) == ["slice", "label", "x", "y", "area"]
    assert "calibration" not in post(client, "nucleus", data, "s.tif").get_json()


NONSENSE = {
    "zero resolution": {"resolution": (0, 0), "resolutionunit": "MICROMETER"},
    "TIFF default: 1 pixel per inch": {"resolution": (1, 1), "resolutionunit": "INCH"},
    "300 dpi print setting": {"resolution": (300, 300), "resolutionunit": "INCH"},
    "no unit": {"resolution": (11.1, 11.1), "resolutionunit": "NONE"},
    "ImageJ unit pixel": {"imagej": True, "resolution": (1, 1), "metadata": {"unit": "pixel"}},
    "ImageJ unit nobody measures in": {
        "imagej": True,
        "resolution": (2, 2),
        "metadata": {"unit": "furlong"},
    },
    "a pixel of a kilometre": {"resolution": (1e-9, 1e-9), "resolutionunit": "MICROMETER"},
}


@pytest.mark.parametrize("options", NONSENSE.values(), ids=NONSENSE.keys())
def test_a_nonsense_calibration_is_ignored_silently(client, image_maker, disks, options):
    data = image_maker.tiff(disks, **options)
    assert read_tiff_calibration(data) is None
    answer = post(client, "nucleus", data, "n.tif").get_json()
    assert "calibration" not in answer
    assert not any("Pixel size" in note or "calibrat" in note.lower() for note in answer["notes"])
    rows = csv_rows(post(client, "nucleus", data, "n.tif", format="csv"))
    assert list(rows[0]) == ["label", "x", "y", "area"]


def test_a_zero_denominator_in_the_resolution_is_ignored(image_maker, disks):
    # tifffile refuses to write one: the rational 7777/1 is patched to 7777/0 in the bytes.
    data = image_maker.tiff(disks, resolution=(7777, 7777), resolutionunit="MICROMETER")
    rational = struct.pack("<II", 7777, 1)
    assert data.count(rational) == 2
    assert read_tiff_calibration(data.replace(rational, struct.pack("<II", 7777, 0))) is None


@pytest.mark.parametrize("spacing", [0, -0.5, "nan", "inf"])
def test_a_nonsense_z_spacing_is_dropped_and_the_pixel_size_kept(image_maker, spacing):
    planes = image_maker.uint8(np.stack([image_maker.disks((40, 40), [(20, 20)], 8)] * 3))
    data = image_maker.tiff(
        planes,
        imagej=True,
        resolution=(10.0, 10.0),
        metadata={"axes": "ZYX", "unit": "um", "spacing": spacing},
    )
    assert read_tiff_calibration(data) == Calibration(0.1, 0.1, "µm", None)


def test_a_time_lapse_has_no_z_spacing(image_maker):
    from devolearn_web.stacks import read_tiff_stack

    planes = image_maker.uint8(np.stack([image_maker.disks((40, 40), [(20, 20)], 8)] * 3))
    data = image_maker.tiff(
        planes,
        imagej=True,
        resolution=(10.0, 10.0),
        metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0},
    )
    assert read_tiff_stack(data).calibration.z_spacing == 2.0
    assert read_tiff_stack(data, axes_override="T").calibration == Calibration(0.1, 0.1, "µm")


def test_calibrated_answers_match_the_openapi_description(client, micrometre_tiff, fiji_stack):
    import jsonschema

    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    single = post(client, "nucleus", micrometre_tiff, "m.tif").get_json()
    jsonschema.validate(single, {**schemas["Segmentation"], "components": document["components"]})
    calibration_schema = {**schemas["Calibration"], "components": document["components"]}
    jsonschema.validate(
        post(client, "nucleus", fiji_stack, "z.tif").get_json()["calibration"], calibration_schema
    )


def test_a_calibrated_stack_draws_its_slices_in_micrometres(client, fiji_stack):
    answer = post(client, "nucleus", fiji_stack, "z.tif", include="figures").get_json()
    for frame in answer["frames"]:
        layout = frame["figures"]["input"]["layout"]
        assert layout["xaxis"]["title"]["text"] == "x (µm)"
        assert layout["yaxis"]["title"]["text"] == "y (µm)"
