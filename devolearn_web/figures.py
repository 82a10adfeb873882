"""Plotly figures for the model pages, as plain dicts in Plotly's JSON schema (no plotly import)."""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import numpy as np
from PIL import Image

from devolearn_web.calibration import UNITS, Calibration
from devolearn_web.catalogue import CATALOGUE, LINEAGES, RANGE_LINEAGE
from devolearn_web.embryo import EmbryoRegion
from devolearn_web.imaging import (
    CONVERSION_BAND_PIXELS,
    DecodedImage,
    encode_indexed_png,
    png_data_url,
    probability_mask,
    to_display_png,
)
from devolearn_web.pipelines import LineageResult, SegmentationResult

# Inputs larger than this on their long side are shown downsampled; the axes stay in upload
# pixels (the image trace stretches each display pixel over dx x dy upload pixels), so a
# 4000x4000 upload does not ship 16 MP of PNG three times over.
MAX_DISPLAY_SIDE = 1024

# The instant threshold mask: the browser (static/js/threshold.js) paints the same colour,
# read from layout.meta, so the server's picture and the slider's picture look alike.
MASK_RGBA = (0, 210, 200, 105)
MASK_IMAGE_NAME = "threshold-mask"
OUTLINES_IMAGE_NAME = "outlines"

# Distinct, colour-blind-friendly colours for object outlines and the label map (Okabe-Ito).
OBJECT_PALETTE = np.array(
    [
        (230, 159, 0),
        (86, 180, 233),
        (0, 158, 115),
        (240, 228, 66),
        (0, 114, 178),
        (213, 94, 0),
        (204, 121, 167),
        (255, 255, 255),
    ],
    dtype=np.uint8,
)

PLOT_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13}


class Scale(NamedTuple):
    """Axis units per upload pixel: µm for a calibrated image, else 1 px."""

    x: float = 1.0
    y: float = 1.0
    unit: str = "px"

    @classmethod
    def of(cls, calibration: Calibration | None) -> Scale:
        """µm per pixel from the file's calibration (whatever unit it was written in)."""
        if calibration is None:
            return cls()
        micrometres = UNITS[calibration.unit][1] * 1e6
        return cls(
            calibration.pixel_width * micrometres, calibration.pixel_height * micrometres, "µm"
        )


PIXELS = Scale()


class DisplayImage(NamedTuple):
    """A PNG data URI and how many upload pixels (x, y) one of its pixels spans."""

    source: str
    dx: float = 1.0
    dy: float = 1.0


def build_figures(
    result: SegmentationResult | LineageResult,
    image: DecodedImage | None,
    shown: DisplayImage | None = None,
) -> dict:
    """Figures for one prediction: {"figures": {key: plotly figure dict}, "input": PNG data URI}.

    `shown` instead of `image`: a held result's figures, with HELD_INPUT for the input picture."""
    shown = shown or _display_input(image.pixels)
    calibration = image.calibration if image is not None else getattr(result, "calibration", None)
    scale = Scale.of(calibration)
    if isinstance(result, LineageResult):
        figures = _lineage_figures(result, shown, image, scale)
    else:
        figures = SEGMENTATION_FIGURES[CATALOGUE[result.model].figures](result, shown, scale)
    if not isinstance(result, LineageResult):
        # Hover on any pixel names its object: the browser reads the label under the pointer.
        figures["input"]["layout"]["meta"]["labels"] = _label_lookup(result.labels)
    return {"figures": figures, "input": shown.source}


# The input picture of a held result's figures: the server keeps no picture of the upload, so
# the page puts back the trace it got with the first answer (static/js/page.js).
HELD_INPUT = DisplayImage("held-by-page")


def _region_figures(result: SegmentationResult, shown: DisplayImage, scale: Scale) -> dict:
    """Each object a filled region (cells between membranes), and a map of their centroids."""
    width, height = result.width, result.height
    count = len(result.objects)
    segmentation = _image_figure(
        f"Segmentation map · {count} {_noun(result, count)}", shown, width, height, scale
    )
    segmentation["layout"]["images"] = [
        _mask_image(result, scale),
        _outlines_image(result.labels, scale),
    ]
    centroids = _label_map_figure(
        f"Centroid map · {count} {_noun(result, count)}", result.labels, width, height, scale
    )
    centroids["data"].append(_centroid_markers(result, "Cell", count <= 60, scale))
    return {
        "input": _image_figure("Input", shown, width, height, scale),
        "segmentation": segmentation,
        "centroids": centroids,
    }


def _outline_figures(result: SegmentationResult, shown: DisplayImage, scale: Scale) -> dict:
    """Each object outlined over the input (nuclei), centroids marked."""
    width, height = result.width, result.height
    count = len(result.objects)
    outlined = _image_figure(
        f"{_noun(result, 2).capitalize()} outlined · {count} {_noun(result, count)}",
        shown,
        width,
        height,
        scale,
    )
    outlined["layout"]["images"] = [
        _mask_image(result, scale),
        _outlines_image(result.labels, scale),
    ]
    outlined["data"].append(_centroid_markers(result, "Nucleus", False, scale))
    return {
        "input": _image_figure("Input", shown, width, height, scale),
        "outlines": outlined,
    }


# The builder of each set of segmentation figures a catalogue entry can name.
SEGMENTATION_FIGURES = {
    ("input", "segmentation", "centroids"): _region_figures,
    ("input", "outlines"): _outline_figures,
}


def _reduced(pixels: np.ndarray, factor: int) -> np.ndarray:
    """PIL's reduce(factor) (the mean of each factor x factor block) of a float HxW image, a
    band of whole blocks at a time: never a full-size float32 copy (float32 answer)."""
    step = factor * max(1, CONVERSION_BAND_PIXELS // (factor * pixels.shape[1]))
    return np.concatenate(
        [
            np.asarray(Image.fromarray(_float32(pixels[top : top + step])).reduce(factor))
            for top in range(0, pixels.shape[0], step)
        ]
    )


def _float32(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.float32)


def _lineage_figures(
    result: LineageResult, shown: DisplayImage, image: DecodedImage, scale: Scale
) -> dict:
    keys = [lineage.key for lineage in LINEAGES]
    counts = [int(result.populations[key]) for key in keys]
    # Past the range or at its end, A's count cannot be trusted to grow with the embryo.
    doubtful = result.outside_training_range or result.at_end_of_training_range
    over_range = [doubtful and key == RANGE_LINEAGE for key in keys]
    bars = {
        "type": "bar",
        "name": "predicted cells",
        "x": keys,
        "y": counts,
        "text": [str(count) for count in counts],
        "textposition": "outside",
        "customdata": [lineage.founder for lineage in LINEAGES],
        "hovertemplate": "%{customdata}: %{y} cells<extra></extra>",
        "marker": {"color": ["#c0392b" if over else "#2a7ab0" for over in over_range]},
    }
    training_maxima = {
        "type": "scatter",
        "mode": "markers",
        "name": "largest count in the training data",
        "x": keys,
        "y": [lineage.maximum for lineage in LINEAGES],
        "marker": {"symbol": "line-ew-open", "size": 28, "line": {"width": 2, "color": "#555"}},
        "hovertemplate": "training data reached %{y} cells<extra></extra>",
    }
    populations = {
        "data": [bars, training_maxima],
        "layout": {
            "title": {"text": f"Cells per lineage · {result.total} in all", "x": 0.02},
            "font": PLOT_FONT,
            "margin": {"l": 55, "r": 15, "t": 45, "b": 45},
            "xaxis": {"title": {"text": "founder lineage"}, "fixedrange": False},
            "yaxis": {"title": {"text": "cells"}, "rangemode": "tozero"},
            "legend": {"orientation": "h", "y": -0.2},
            "uirevision": result.model,
            "bargap": 0.3,
            "hovermode": "closest",
        },
    }
    # The dashed ellipse is named in the title: nothing else on the page says what it is.
    title = "Input" if result.embryo is None else "Input · dashed: embryo found"
    figure = _image_figure(title, shown, image.width, image.height, scale)
    if result.embryo is not None:
        figure["data"].append(_embryo_outline(result.embryo, scale))
    return {"input": figure, "populations": populations}


def _embryo_outline(embryo: EmbryoRegion, scale: Scale, points: int = 73) -> dict:
    """The ellipse where the embryo was found (the region the model saw), in axis units."""
    turn = np.linspace(0.0, 2.0 * np.pi, points)
    angle = np.radians(embryo.angle_deg)
    along, across = embryo.major / 2 * np.cos(turn), embryo.minor / 2 * np.sin(turn)
    x = embryo.centre_col + along * np.cos(angle) + across * np.sin(angle)
    y = embryo.centre_row - along * np.sin(angle) + across * np.cos(angle)
    return {
        "type": "scatter",
        "mode": "lines",
        "name": "embryo found",
        "x": np.round(x * scale.x, 3).tolist(),
        "y": np.round(y * scale.y, 3).tolist(),
        "line": {"color": "#f1c40f", "width": 2, "dash": "dash"},
        "hoverinfo": "name",
        "showlegend": False,
    }


def _image_figure(
    title: str, shown: DisplayImage, width: int, height: int, scale: Scale = PIXELS
) -> dict:
    """A figure showing one image, y downwards, equal aspect: axes in upload pixels, or in µm
    (upload pixels times the pixel size) when the file is calibrated."""
    places = ".0f" if scale.unit == "px" else ".2f"
    trace = {
        "type": "image",
        "name": "input",
        "source": shown.source,
        # Pixel centres sit at x0 + i*dx; this keeps the image edges at -0.5 and width - 0.5.
        "x0": (-0.5 + shown.dx / 2) * scale.x,
        "y0": (-0.5 + shown.dy / 2) * scale.y,
        "dx": shown.dx * scale.x,
        "dy": shown.dy * scale.y,
        "hovertemplate": f"x %{{x:{places}}}, y %{{y:{places}}} {scale.unit}<extra></extra>",
    }
    return {"data": [trace], "layout": _image_layout(title, width, height, scale)}


def _image_layout(title: str, width: int, height: int, scale: Scale = PIXELS) -> dict:
    axis = {
        "showgrid": False,
        "zeroline": False,
        "constrain": "domain",
        "ticks": "outside",
        "automargin": True,
    }
    return {
        "title": {"text": title, "x": 0.02},
        "font": PLOT_FONT,
        "margin": {"l": 50, "r": 15, "t": 45, "b": 40},
        "xaxis": {
            **axis,
            "range": [-0.5 * scale.x, (width - 0.5) * scale.x],
            "title": {"text": f"x ({_unit_words(scale)})"},
        },
        "yaxis": {
            **axis,
            "range": [(height - 0.5) * scale.y, -0.5 * scale.y],
            "scaleanchor": "x",
            "scaleratio": 1,
            "title": {"text": f"y ({_unit_words(scale)})"},
        },
        "plot_bgcolor": "#111111",
        "hovermode": "closest",
        "dragmode": "zoom",
        # Keeps the visitor's zoom when the page swaps in figures for a new threshold.
        "uirevision": "image",
        "showlegend": False,
        "meta": {
            "width": width,
            "height": height,
            "mask_rgba": list(MASK_RGBA),
            "unit": scale.unit,
            "pixel_size": [scale.x, scale.y],
        },
    }


def _overlay_image(
    name: str, source: str, width: int, height: int, scale: Scale, anchor: str = "top"
) -> dict:
    """An RGBA picture laid exactly over the image's pixels (upload pixel coordinates).

    Plotly keys layout images by their geometry (xref, x, sizex, yref, y, sizey) and draws only
    one of several that share it, so the two overlays of a figure are anchored at different
    corners (anchor "top" or "bottom") to cover the same pixels under different keys.
    """
    return {
        "name": name,
        "source": source,
        "xref": "x",
        "yref": "y",
        "x": -0.5 * scale.x,
        "y": (-0.5 if anchor == "top" else height - 0.5) * scale.y,
        "sizex": width * scale.x,
        "sizey": height * scale.y,
        "xanchor": "left",
        "yanchor": anchor,
        "sizing": "stretch",
        "layer": "above",
        "opacity": 1,
    }


def _mask_image(result: SegmentationResult, scale: Scale = PIXELS) -> dict:
    """The probability map thresholded as the slider does it, painted in MASK_RGBA."""
    mask = probability_mask(result.probability, result.threshold).view(np.uint8)
    png = encode_indexed_png(mask, [(0, 0, 0), MASK_RGBA[:3]], alpha=[0, MASK_RGBA[3]])
    return _overlay_image(MASK_IMAGE_NAME, png_data_url(png), result.width, result.height, scale)


def _outlines_image(labels: np.ndarray, scale: Scale = PIXELS) -> dict:
    """Each object's inner boundary in its own colour; touching objects stay visibly apart."""
    colours = np.empty(labels.shape, dtype=np.uint8)
    for rows in _bands(labels):
        # One row of context above and below, for the boundaries at the band's edges.
        top, bottom = max(0, rows.start - 1), min(labels.shape[0], rows.stop + 1)
        edge = inner_boundaries(labels[top:bottom])[rows.start - top : rows.stop - top]
        colours[rows] = np.where(edge, _palette_index(labels[rows]), 0)
    palette = np.vstack([(0, 0, 0), OBJECT_PALETTE])
    png = encode_indexed_png(colours, palette, alpha=[0] + [255] * len(OBJECT_PALETTE))
    height, width = labels.shape
    return _overlay_image(OUTLINES_IMAGE_NAME, png_data_url(png), width, height, scale, "bottom")


def _label_map_figure(
    title: str, labels: np.ndarray, width: int, height: int, scale: Scale = PIXELS
) -> dict:
    """Objects filled in palette colours on black, the background of the centroid map."""
    palette = np.vstack([(0, 0, 0), (OBJECT_PALETTE * 0.55).astype(np.uint8)])
    indices = np.empty(labels.shape, dtype=np.uint8)
    for rows in _bands(labels):
        indices[rows] = _palette_index(labels[rows])
    png = encode_indexed_png(indices, palette)
    return _image_figure(title, DisplayImage(png_data_url(png)), width, height, scale)


def _bands(image: np.ndarray) -> list[slice]:
    """Row slices of about CONVERSION_BAND_PIXELS pixels: the overlays of a large upload are
    made a band at a time (one byte a pixel kept, not several full-size temporaries)."""
    step = max(1, CONVERSION_BAND_PIXELS // max(1, image.shape[1]))
    return [slice(top, min(image.shape[0], top + step)) for top in range(0, image.shape[0], step)]


def _palette_index(labels: np.ndarray) -> np.ndarray:
    """uint8 HxW: 0 for background, else 1 + the object's colour in OBJECT_PALETTE."""
    return np.where(labels > 0, (labels - 1) % len(OBJECT_PALETTE) + 1, 0).astype(np.uint8)


def inner_boundaries(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label (bool HxW): scikit-image's
    find_boundaries(mode="inner") on the objects, by four shifted comparisons, not two
    full-image rank filters."""
    edge = np.zeros(labels.shape, dtype=bool)
    differs_down = labels[1:] != labels[:-1]
    differs_right = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= differs_down
    edge[:-1] |= differs_down
    edge[:, 1:] |= differs_right
    edge[:, :-1] |= differs_right
    return edge & (labels > 0)


def _centroid_markers(
    result: SegmentationResult, noun: str, show_labels: bool, scale: Scale = PIXELS
) -> dict:
    objects = result.objects
    if scale.unit == "px":
        where = "x %{x:.1f}, y %{y:.1f} px<br>area %{customdata[1]} px²"
    else:
        # µm first, pixels kept: the table and the downloads count in both.
        where = "x %{x:.2f}, y %{y:.2f} µm<br>area %{customdata[2]:.2f} µm² (%{customdata[1]} px²)"
    return {
        "type": "scatter",
        "mode": "markers+text" if show_labels else "markers",
        "name": "centroids",
        "x": [obj.x * scale.x for obj in objects],
        "y": [obj.y * scale.y for obj in objects],
        "text": [str(obj.label) for obj in objects],
        "textposition": "top center",
        "textfont": {"color": "white", "size": 11},
        "customdata": [[obj.label, obj.area, obj.area * scale.x * scale.y] for obj in objects],
        "hovertemplate": f"{noun} %{{customdata[0]}}<br>{where}<extra></extra>",
        "marker": {"size": 7, "color": "#ff3d7f", "line": {"width": 1, "color": "white"}},
    }


def _display_input(pixels: np.ndarray) -> DisplayImage:
    """The input (float HxW, 0..1) as a contrast-stretched PNG, downsampled when huge."""
    height, width = pixels.shape
    factor = max(1, math.ceil(max(height, width) / MAX_DISPLAY_SIDE))
    if factor > 1:
        pixels = _reduced(pixels, factor)
    source = png_data_url(to_display_png(pixels))
    return DisplayImage(source, width / pixels.shape[1], height / pixels.shape[0])


def _unit_words(scale: Scale) -> str:
    return "pixels" if scale.unit == "px" else scale.unit


def _label_lookup(labels: np.ndarray) -> dict:
    """The label map as an RGB PNG (label = R + 256 G + 65536 B), shrunk by nearest neighbour
    past MAX_DISPLAY_SIDE, and how many upload pixels one of its pixels spans."""
    height, width = labels.shape
    factor = max(1, math.ceil(max(height, width) / MAX_DISPLAY_SIDE))
    small = np.asarray(labels[::factor, ::factor], dtype=np.uint32)
    rgb = np.stack([small & 255, (small >> 8) & 255, (small >> 16) & 255], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return {"source": png_data_url(buffer.getvalue()), "step": factor}


def _noun(result: SegmentationResult, count: int) -> str:
    """What the model's objects are called (its catalogue entry's words), for `count` of them."""
    model = CATALOGUE.get(result.model)
    if model is None:
        return _plural(count, "object")
    return model.page.count_noun_one if count == 1 else model.page.count_noun


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return singular if count == 1 else (plural or singular + "s")
