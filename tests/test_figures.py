"""Figures for the model pages: valid Plotly, in upload pixels, masks and outlines that match."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from devolearn_web.calibration import Calibration
from devolearn_web.catalogue import FIGURE_ORDER, LINEAGE_ORDER
from devolearn_web.figures import (
    MASK_IMAGE_NAME,
    MASK_RGBA,
    MAX_DISPLAY_SIDE,
    OBJECT_PALETTE,
    OUTLINES_IMAGE_NAME,
    build_figures,
)
from devolearn_web.imaging import DecodedImage
from devolearn_web.pipelines import LineageResult, SegmentationResult
from devolearn_web.segmentation import measure_objects, split_touching_objects

go = pytest.importorskip("plotly.graph_objects")


def decoded(pixels: np.ndarray) -> DecodedImage:
    height, width = pixels.shape
    return DecodedImage(pixels.astype(np.float32), width, height, "L", ())


def segmentation_result(model: str, probability: np.ndarray, threshold: float = 0.5):
    labels = split_touching_objects(probability >= threshold, smoothing=probability)
    height, width = probability.shape
    return SegmentationResult(
        model=model,
        width=width,
        height=height,
        threshold=threshold,
        probability=probability.astype(np.float32),
        labels=labels,
        objects=measure_objects(labels),
        notes=(),
        timings_ms={},
    )


def lineage_result(a_count: int = 21) -> LineageResult:
    populations = dict(zip(LINEAGE_ORDER, [a_count, 2, 5, 0, 4, 1, 0], strict=True))
    return LineageResult(
        model="lineage",
        populations=populations,
        total=sum(populations.values()),
        outside_training_range=a_count > 250,
        at_end_of_training_range=240 <= a_count <= 250,
        notes=(),
        timings_ms={},
    )


def png_pixels(data_uri: str) -> np.ndarray:
    assert data_uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))
    # Overlays are palette PNGs: compare the colours a browser draws, not the indices.
    return np.asarray(image.convert("RGBA") if image.mode == "P" else image)


def layout_image(figure: dict, name: str) -> dict:
    return next(image for image in figure["layout"]["images"] if image["name"] == name)


@pytest.fixture
def two_touching_disks(image_maker) -> np.ndarray:
    """float32 90x160: two disks of radius 14 that touch, and one apart."""
    return image_maker.disks((90, 160), [(40, 45), (66, 45), (125, 45)], 14)


@pytest.mark.parametrize("model", ["membrane", "nucleus"])
def test_segmentation_figures_are_valid_plotly_in_upload_pixels(model, two_touching_disks):
    answer = build_figures(
        segmentation_result(model, two_touching_disks), decoded(two_touching_disks)
    )
    assert tuple(answer["figures"]) == FIGURE_ORDER[model]
    assert answer["input"].startswith("data:image/png;base64,")
    for figure in answer["figures"].values():
        go.Figure(figure)  # raises on anything outside Plotly's schema
        layout = figure["layout"]
        assert layout["xaxis"]["range"] == [-0.5, 159.5]
        assert layout["yaxis"]["range"] == [89.5, -0.5]  # y downwards
        assert layout["yaxis"]["scaleanchor"] == "x"
        image_trace = figure["data"][0]
        assert image_trace["type"] == "image"
        assert png_pixels(image_trace["source"]).shape[:2] == (90, 160)


@pytest.mark.parametrize("model", ["membrane", "nucleus"])
def test_mask_overlay_is_the_thresholded_probability_in_the_browser_colour(model):
    probability = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    result = segmentation_result(model, probability, threshold=0.7)
    figures = build_figures(result, decoded(probability))["figures"]
    overlaid = next(f for f in figures.values() if f["layout"].get("images"))
    mask = png_pixels(layout_image(overlaid, MASK_IMAGE_NAME)["source"])
    assert mask.shape == (30, 40, 4)
    np.testing.assert_array_equal(mask[..., 3] > 0, probability >= 0.7)
    assert tuple(mask[probability >= 0.7][0]) == MASK_RGBA
    assert overlaid["layout"]["meta"]["mask_rgba"] == list(MASK_RGBA)


@pytest.mark.parametrize("model", ["membrane", "nucleus"])
def test_overlays_are_all_drawn_by_plotly(model, two_touching_disks):
    # Plotly draws one layout image per (xref, x, sizex, yref, y, sizey): keys must differ.
    result = segmentation_result(model, two_touching_disks)
    for figure in build_figures(result, decoded(two_touching_disks))["figures"].values():
        images = figure["layout"].get("images", [])
        keys = {
            tuple(image[k] for k in ("xref", "x", "sizex", "yref", "y", "sizey"))
            for image in images
        }
        assert len(keys) == len(images)
        for image in images:  # each covers the pixels from -0.5 to size - 0.5
            top = image["y"] if image["yanchor"] == "top" else image["y"] - image["sizey"]
            assert (image["x"], top, image["sizex"], image["sizey"]) == (-0.5, -0.5, 160, 90)


def test_nucleus_outlines_keep_touching_nuclei_apart(two_touching_disks):
    result = segmentation_result("nucleus", two_touching_disks)
    assert len(result.objects) == 3
    figure = build_figures(result, decoded(two_touching_disks))["figures"]["outlines"]
    outlines = png_pixels(layout_image(figure, OUTLINES_IMAGE_NAME)["source"])
    drawn = outlines[..., 3] > 0
    # Outlines are boundaries: drawn pixels lie inside objects, object centres stay clear.
    assert np.all(result.labels[drawn] > 0)
    for obj in result.objects:
        assert not drawn[round(obj.y), round(obj.x)]
    # Each of the two touching nuclei has its own outline colour along the line between them.
    colours = {tuple(outlines[row, col, :3]) for row, col in zip(*np.nonzero(drawn), strict=True)}
    assert len(colours) >= 3
    markers = figure["data"][1]
    assert markers["x"] == [obj.x for obj in result.objects]
    assert [label for label, *_ in markers["customdata"]] == [1, 2, 3]


@pytest.mark.parametrize("model", ["membrane", "nucleus"])
def test_calibrated_figures_are_in_micrometres(model, two_touching_disks):
    calibrated = DecodedImage(two_touching_disks, 160, 90, "L", (), Calibration(0.25, 0.25, "µm"))
    result = segmentation_result(model, two_touching_disks)
    figures = build_figures(result, calibrated)["figures"]
    for figure in figures.values():
        go.Figure(figure)
        layout = figure["layout"]
        assert layout["xaxis"]["title"]["text"] == "x (µm)"
        assert layout["xaxis"]["range"] == [-0.125, 159.5 * 0.25]
        assert layout["meta"]["pixel_size"] == [0.25, 0.25]
        for image in layout.get("images", []):  # overlays cover the same µm as the image
            assert (image["x"], image["sizex"], image["sizey"]) == (-0.125, 40.0, 22.5)
    markers = next(t for f in figures.values() for t in f["data"] if t["name"] == "centroids")
    assert markers["x"] == [obj.x * 0.25 for obj in result.objects]
    assert "µm²" in markers["hovertemplate"] and "px²" in markers["hovertemplate"]
    assert markers["customdata"][0][2] == result.objects[0].area * 0.0625


def test_uncalibrated_figures_say_pixels(two_touching_disks):
    result = segmentation_result("nucleus", two_touching_disks)
    figures = build_figures(result, decoded(two_touching_disks))["figures"]
    assert figures["input"]["layout"]["xaxis"]["title"]["text"] == "x (pixels)"
    assert figures["input"]["layout"]["meta"]["unit"] == "px"


def test_input_figure_carries_the_label_map_for_hover(two_touching_disks):
    result = segmentation_result("nucleus", two_touching_disks)
    lookup = build_figures(result, decoded(two_touching_disks))["figures"]["input"]["layout"]
    lookup = lookup["meta"]["labels"]
    rgb = png_pixels(lookup["source"]).astype(np.int64)
    labels = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    assert lookup["step"] == 1
    np.testing.assert_array_equal(labels, result.labels)


def test_membrane_centroid_map_has_one_marker_per_cell(two_touching_disks):
    result = segmentation_result("membrane", two_touching_disks)
    centroids = build_figures(result, decoded(two_touching_disks))["figures"]["centroids"]
    markers = centroids["data"][1]
    assert len(markers["x"]) == len(result.objects)
    assert "area" in markers["hovertemplate"]


def test_lineage_bar_chart_lists_the_seven_lineages_in_order():
    image = decoded(np.random.default_rng(0).random((60, 80)))
    figures = build_figures(lineage_result(), image)["figures"]
    assert tuple(figures) == FIGURE_ORDER["lineage"]
    bars = figures["populations"]["data"][0]
    assert bars["x"] == list(LINEAGE_ORDER)
    assert bars["y"] == [21, 2, 5, 0, 4, 1, 0]
    assert "33 in all" in figures["populations"]["layout"]["title"]["text"]
    for figure in figures.values():
        go.Figure(figure)


def test_lineage_past_training_range_is_coloured_differently():
    for a_count in (312, 245):  # past the range, and at its end where counts stop rising
        bars = build_figures(lineage_result(a_count), decoded(np.zeros((20, 20))))["figures"]
        colours = bars["populations"]["data"][0]["marker"]["color"]
        assert colours[0] != colours[1] and len(set(colours[1:])) == 1
    bars = build_figures(lineage_result(200), decoded(np.zeros((20, 20))))["figures"]
    assert len(set(bars["populations"]["data"][0]["marker"]["color"])) == 1


def test_large_input_is_shown_downsampled_with_axes_still_in_upload_pixels():
    pixels = np.random.default_rng(1).random((1500, 2500)).astype(np.float32)
    figures = build_figures(lineage_result(), decoded(pixels))["figures"]
    trace = figures["input"]["data"][0]
    shown = png_pixels(trace["source"])
    assert max(shown.shape) <= MAX_DISPLAY_SIDE
    assert trace["dx"] * shown.shape[1] == pytest.approx(2500)
    assert trace["dy"] * shown.shape[0] == pytest.approx(1500)
    assert trace["x0"] - trace["dx"] / 2 == pytest.approx(-0.5)
    assert figures["input"]["layout"]["xaxis"]["range"] == [-0.5, 2499.5]


@pytest.mark.parametrize("seed", range(4))
def test_inner_boundaries_match_scikit_image(seed):
    from skimage.segmentation import find_boundaries

    from devolearn_web.figures import inner_boundaries

    rng = np.random.default_rng(seed)
    labels = (rng.random((40, 57)) * 4).astype(np.int32)  # every kind of neighbour, edges too
    expected = find_boundaries(labels, mode="inner") & (labels > 0)
    np.testing.assert_array_equal(inner_boundaries(labels), expected)


def test_centroid_map_fills_objects_in_dimmed_palette_colours(two_touching_disks):
    result = segmentation_result("membrane", two_touching_disks)
    figure = build_figures(result, decoded(two_touching_disks))["figures"]["centroids"]
    pixels = png_pixels(figure["data"][0]["source"])
    assert pixels.shape == (90, 160, 4) and np.all(pixels[..., 3] == 255)
    assert np.all(pixels[result.labels == 0][:, :3] == 0)
    for obj in result.objects:
        expected = (OBJECT_PALETTE[(obj.label - 1) % len(OBJECT_PALETTE)] * 0.55).astype(np.uint8)
        np.testing.assert_array_equal(pixels[round(obj.y), round(obj.x), :3], expected)
