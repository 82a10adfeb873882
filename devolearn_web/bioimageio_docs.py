"""The README.md inside a BioImage.IO package: plain words from the model card."""

from __future__ import annotations

import math

from devolearn_web import catalogue
from devolearn_web.catalogue import RANGE_LINEAGE, TRAINING_RANGE
from devolearn_web.model_cards import ModelCard
from devolearn_web.scale import MIN_CANVAS_SIDE, TILE_OVERLAP, TILE_SIDE

SEGMENTATION_STEPS = """\
## What the app does around the network (and a tool following rdf.yaml does not)

The rdf.yaml describes one network run: `scale_range` (percentiles {low:g} and {high:g} of each
image, to 0 and 1), `clip` to [0, 1], the network, a probability per pixel. DevoLearn Web also:

1. **Finds the embryo** (blurred foreground, the hull of its regions, a fitted ellipse) and
   measures the contrast stretch inside the embryo's box, so the margin does not change it.
2. **Brings the image to the working grid** the network was trained at: the embryo's long axis
   along x (a transpose when it lies along y), the embryo {length:g} grid columns long, and rows
   stretched {aspect:g} times relative to columns (the training frames were squashed to
   256 x 256). A working-grid pixel is about {um_x:g} µm wide and {um_y:g} µm tall (the
   `scale` of the input axes). With a known pixel size, resize your image to that grid first.
3. **Checks the object size**: objects of median diameter outside {d_low:g}-{d_high:g} grid pixels
   (trained median {d_median:g}) make it run once more at a scale that brings them inside.
4. Puts small images on a dark canvas of at least {canvas} pixels, pads to a multiple of 32,
   runs grids larger than {tile} in {tile}-pixel tiles overlapping by {overlap}, and averages
   each tile with its mirror image.
5. Thresholds the probability at {threshold:g} (the card's default), {objects}, and maps the
   objects back to the upload's pixels.
"""

LINEAGE_STEPS = """\
## What the app does around the network (and a tool following rdf.yaml does not)

The rdf.yaml describes one network run: `scale_range` (percentiles {low:g} and {high:g}), `clip`
to [0, 1], `scale_linear` to [-1, 1], the network, then `scale_linear` by each lineage's
maximum ({maxima}), which gives cell counts before calibration. DevoLearn Web also:

1. **Cuts the embryo out**: it finds the embryo, lays its long axis along x and resamples it
   so the long axis fills {fill_length:g} of the 256-pixel width and the short axis
   {fill_width:g} of the height, as in the training frames. The test input is such a view;
   give the network such a view of your embryo, not the whole field.
2. Averages the answers of the four mirror images of that view.
3. Maps each lineage's count through the card's calibration curve (`output.calibration` in
   `{name}.json`), clips at 0 and rounds; A past {a_limit} cells is extrapolation.
"""


def package_readme(card: ModelCard, example: str) -> str:
    """Markdown: the model, its training data, metrics, limitations and the app's steps."""
    name = card["name"]
    data = card.get("training_data", {})
    lines = [
        f"# {card['title']} (DevoLearn Web {name} {card['version']})",
        "",
        "**This model was trained only on simulated C. elegans embryos**, rendered by DevoLearn "
        "Web's simulator, never on real microscopy. Its test metrics below are measured on "
        "simulated embryos it never saw; on real images it was checked on the real samples "
        "named below only.",
        "",
        f"- Architecture: {card['architecture']}; ONNX opset {card.get('opset', 17)}, float32.",
        f"- Input: {card['input']['description']}.",
        f"- Output: {card['output']['meaning']}.",
        f"- Test input: `{example}` (from the devolearn package, MIT licence), prepared as the "
        "app prepares the network's input; test output: this ONNX file's answer to it through "
        "ONNX Runtime.",
        "",
        "## Training data",
        "",
        str(data.get("description", "Not stated.")),
        "",
        "## Validation",
        "",
        "Metrics from the card (`python -m devolearn_web.training evaluate`):",
        "",
        *metric_lines(card.get("metrics", {})),
        "",
        "## Limitations",
        "",
        *(f"- {item}" for item in card.get("limitations", [])),
        "",
        app_steps(card),
        "## Use it",
        "",
        "- Fiji: install deepImageJ, then Plugins > deepImageJ > Install model > from a zip file "
        "(this zip). Prepare the image at the working grid's scale (above), then run it.",
        "- Python: `bioimageio.core` (`pip install bioimageio.core onnxruntime`): "
        "`bioimageio test bioimageio.zip`, then `bioimageio predict`.",
        "- ilastik (Neural Network Classification) and QuPath (the bioimage.io extension) load "
        "the zip too.",
        f"- Or drop the image on the DevoLearn Web `{name}` page, which does every step above.",
        "",
        "## Reproduce",
        "",
        f"`{card.get('reproduce', 'not stated')}`; this package: "
        f"`python -m devolearn_web.training bioimageio --model {name}`.",
        "",
    ]
    return "\n".join(lines)


def metric_lines(metrics: dict) -> list[str]:
    """One line per test metric and real sample, rounded to 4 significant digits."""
    lines = []
    for key, value in metrics.get("test", {}).items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {_number(v)}" for k, v in value.items() if _is_number(v))
            if shown:
                lines.append(f"- Test {key.replace('_', ' ')}: {shown}")
        elif _is_number(value):
            lines.append(f"- Test {key.replace('_', ' ')}: {_number(value)}")
    for target, entry in metrics.get("targets", {}).items():
        met = "met" if entry.get("met") else "not met"
        lines.append(f"- Target {target.replace('_', ' ')} {entry.get('target')}: {met}")
    for sample, entry in metrics.get("real_samples", {}).items():
        found = entry.get("count", entry.get("total"))
        lines.append(
            f"- Real sample `{sample}` (no ground truth): {found}, expected "
            f"{entry.get('expected_range', 'not stated')}"
        )
    return lines or ["Not stated."]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: float) -> str:
    return f"{value:.4g}"


def app_steps(card: ModelCard) -> str:
    """What the app does beyond the rdf.yaml's one network run."""
    from devolearn_web.imaging import MODEL_HIGH_PERCENTILE, MODEL_LOW_PERCENTILE

    percentiles = {"low": MODEL_LOW_PERCENTILE, "high": MODEL_HIGH_PERCENTILE}
    if card["task"] != "segmentation":
        fill = card["input"]["embryo_fill"]
        return LINEAGE_STEPS.format(
            **percentiles,
            maxima=", ".join(
                f"{k} {v}"
                for k, v in zip(card["output"]["lineages"], card["output"]["maxima"], strict=True)
            ),
            fill_length=fill["length"],
            fill_width=fill["width"],
            name=card["name"],
            a_limit=card.output.training_range.get(RANGE_LINEAGE, TRAINING_RANGE[RANGE_LINEAGE]),
        )
    grid = card["input"]["working_grid"]
    root = math.sqrt(grid["aspect"])
    objects = catalogue.entry(card["name"]).package.objects
    return SEGMENTATION_STEPS.format(
        **percentiles,
        length=grid["embryo_length_px"],
        aspect=grid["aspect"],
        um_x=round(grid["um_per_px"] * root, 3),
        um_y=round(grid["um_per_px"] / root, 3),
        d_low=grid["object_diameter_px"]["range"][0],
        d_high=grid["object_diameter_px"]["range"][1],
        d_median=grid["object_diameter_px"]["median"],
        canvas=MIN_CANVAS_SIDE,
        tile=TILE_SIDE,
        overlap=TILE_OVERLAP,
        threshold=card["output"]["default_threshold"],
        objects=objects,
    )
