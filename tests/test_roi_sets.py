"""Fiji ROI sets (format=roi) read back with roifile: one polygon per object, on its own plane."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from roifile import ROI_TYPE, ImagejRoi
from skimage.measure import points_in_poly

from tests.test_downloads import DISKS, post, two_time_points_of_three_slices


def read_roi_set(body: bytes) -> list[ImagejRoi]:
    """The ROIs of an ImageJ ROI set (.zip of .roi files), in the zip's order."""
    with zipfile.ZipFile(io.BytesIO(body)) as bundle:
        return [ImagejRoi.frombytes(bundle.read(name)) for name in bundle.namelist()]


def centroid_inside(roi: ImagejRoi, obj: dict) -> bool:
    """True when the object's centroid (pixel centres at integers) lies inside the polygon,
    whose coordinates are ImageJ's (pixel centres at +0.5)."""
    point = np.array([[obj["x"] + 0.5, obj["y"] + 0.5]])
    return bool(points_in_poly(point, roi.coordinates())[0])


def test_one_image_gives_one_polygon_per_object_named_by_label(client, image_maker):
    disks = image_maker.encode(image_maker.uint8(image_maker.disks((140, 200), DISKS, 12)))
    answer = post(client, "nucleus", disks, "d.png").get_json()
    response = post(client, "nucleus", disks, "d.png", format="roi")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="nucleus-d_RoiSet.zip"'
    rois = read_roi_set(response.data)
    assert len(rois) == answer["count"] == len(DISKS)
    for roi, obj in zip(rois, answer["objects"], strict=True):
        assert roi.roitype == ROI_TYPE.POLYGON and roi.name == f"label_{obj['label']:04d}"
        assert centroid_inside(roi, obj)
        assert roi.position == 0  # one image: no plane to name
        # Traced between the object's pixels and its neighbours': the polygon's area is the
        # object's pixel count less about half a pixel along its outline.
        x, y = roi.coordinates().T
        area = abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2
        assert 0.85 * obj["area"] < area <= obj["area"]


def test_a_z_stack_places_each_roi_on_its_slice(client, image_maker):
    planes = [image_maker.disks((140, 200), DISKS[: count + 1], 12) for count in range(3)]
    stack = image_maker.tiff(image_maker.uint8(np.stack(planes)), photometric="minisblack")
    answer = post(client, "nucleus", stack, "s.tif").get_json()
    rois = read_roi_set(post(client, "nucleus", stack, "s.tif", format="roi").data)
    expected = [(frame["index"], obj) for frame in answer["frames"] for obj in frame["objects"]]
    assert len(rois) == len(expected) == 6
    for roi, (index, obj) in zip(rois, expected, strict=True):
        assert roi.position == index + 1  # ImageJ counts slices from 1
        assert roi.name == f"slice_{index + 1:03d}_label_{obj['label']:04d}"
        assert centroid_inside(roi, obj)


def test_a_time_lapse_of_z_stacks_gives_each_roi_its_frame_and_slice(client, image_maker):
    hyperstack = two_time_points_of_three_slices(image_maker)
    answer = post(client, "nucleus", hyperstack, "tz.tif").get_json()
    rois = read_roi_set(post(client, "nucleus", hyperstack, "tz.tif", format="roi").data)
    expected = [(frame, obj) for frame in answer["frames"] for obj in frame["objects"]]
    assert len(rois) == len(expected)
    for roi, (frame, obj) in zip(rois, expected, strict=True):
        time, z = frame["position"]["time"], frame["position"]["z"]
        assert (roi.t_position, roi.z_position, roi.c_position) == (time + 1, z + 1, 1)
        assert roi.position == frame["index"] + 1
        assert roi.name.startswith(f"frame_{time + 1:03d}_slice_{z + 1:03d}_")
        assert centroid_inside(roi, obj)


def test_the_zip_download_holds_the_roi_set(client, image_maker):
    disks = image_maker.encode(image_maker.uint8(image_maker.disks((140, 200), DISKS, 12)))
    body = post(client, "membrane", disks, "d.png", format="zip").data
    bundle = zipfile.ZipFile(io.BytesIO(body))
    rois = read_roi_set(bundle.read("membrane-d_RoiSet.zip"))
    count = post(client, "membrane", disks, "d.png").get_json()["count"]
    assert len(rois) == count > 0


def test_lineage_refuses_a_roi_set_with_a_sentence(client, image_maker):
    disks = image_maker.encode(image_maker.uint8(image_maker.disks((140, 200), DISKS, 12)))
    response = post(client, "lineage", disks, "d.png", format="roi")
    assert response.status_code == 400
    assert "lineage model counts cells per lineage" in response.get_json()["error"]


def test_a_large_object_is_traced_on_a_sample_and_still_encloses_its_centre():
    from devolearn_web.roi_sets import frame_rois
    from devolearn_web.segmentation import measure_objects

    labels = np.zeros((1500, 1400), dtype=np.uint16)
    rows, cols = np.ogrid[:1500, :1400]
    labels[(rows - 750) ** 2 / 700**2 + (cols - 700) ** 2 / 650**2 <= 1] = 1
    (obj,) = measure_objects(labels)
    (roi,) = frame_rois(labels, [obj])
    assert len(roi.coordinates()) < 4 * (1500 + 1400)  # sampled: fewer vertices than pixels
    assert centroid_inside(roi, obj.to_dict())
    x, y = roi.coordinates().T
    area = abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2
    assert area == pytest.approx(obj.area, rel=0.01)


def test_a_real_nucleus_image_gives_one_roi_per_nucleus(client, real_sample):
    data = real_sample("embryo_sample.png").read_bytes()
    answer = post(client, "nucleus", data, "embryo_sample.png").get_json()
    rois = read_roi_set(post(client, "nucleus", data, "embryo_sample.png", format="roi").data)
    assert len(rois) == answer["count"] > 10
    assert all(centroid_inside(roi, obj) for roi, obj in zip(rois, answer["objects"], strict=True))


def test_a_roi_set_is_counted_like_the_label_tiff_that_it_is_traced_from():
    from devolearn_web.memory_estimate import READS_LABELS, UploadShape, estimate_bytes

    # The ROI set reads the 16-bit labels at the upload's size (2 bytes a pixel), then is tiny.
    assert "roi" in READS_LABELS
    shape = UploadShape(6000, 6000)
    as_json = estimate_bytes(1_000_000, shape, "segmentation", "json")
    as_roi = estimate_bytes(1_000_000, shape, "segmentation", "roi")
    assert as_json < as_roi < estimate_bytes(1_000_000, shape, "segmentation", "tiff")
