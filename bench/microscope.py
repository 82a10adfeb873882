"""What real microscopes do that the simulator does not, through the app: the count error on
simulated test slices as rendered, blurred along one axis and recorded with half the pixels,
and (nucleus) with each nucleus dimmed by its own factor down to a tenth (after rendering, and
in the simulator, where a dim nucleus's glow is dim too), and on whole-embryo projections
rendered even and uneven; for one or more model folders side by side.

    PYTHONPATH=. python -m bench.microscope --models-dir models --models-dir /tmp/other --count 16
    PYTHONPATH=. python -m bench.microscope --model membrane --models-dir models --count 16
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

MODELS = ("nucleus", "membrane")
STREAM = 29  # its own draw of test views, apart from the scale sweep's and the tests'
AXIS_BLUR_SIGMA = 2.5
FEWER_PIXELS = 0.5
UNEVEN = "rendered with uneven nuclei, down to a tenth"
PROJECTIONS = "projections, as rendered"
UNEVEN_PROJECTIONS = "projections rendered with uneven nuclei"


def variants(model: str) -> dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]]:
    """name -> change(uint8 image, label map, seed) -> uint8 image."""
    from devolearn_web.training.augment import AxisBlur, VaryObjectBrightness

    def through(transform) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
        def change(image: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
            transform.set_random_seed(seed)
            scaled = image.astype(np.float32) / 255.0
            out = transform(image=scaled, mask=labels.astype(np.int32))["image"]
            return np.rint(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)

        return change

    def fewer_pixels(image: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
        # A camera with coarser pixels: the same field in half the pixels (the app resizes it).
        height, width = image.shape
        size = (round(width * FEWER_PIXELS), round(height * FEWER_PIXELS))
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))

    changes = {
        "as rendered": lambda image, labels, seed: image,
        "each nucleus dimmed, down to a tenth": through(VaryObjectBrightness(p=1.0)),
        f"blurred along one axis (sigma {AXIS_BLUR_SIGMA:g} px)": through(
            AxisBlur(sigma_range=(AXIS_BLUR_SIGMA, AXIS_BLUR_SIGMA), p=1.0)
        ),
        f"recorded with {FEWER_PIXELS:g}x the pixels per side": fewer_pixels,
    }
    if model != "nucleus":
        del changes["each nucleus dimmed, down to a tenth"]
    return changes


def rows(model: str) -> tuple[str, ...]:
    """The table's pictures for `model`, in order."""
    if model != "nucleus":
        return tuple(variants(model))
    return (*variants(model), UNEVEN, PROJECTIONS, UNEVEN_PROJECTIONS)


def count_errors(model: str, models_dir: Path, count: int) -> dict[str, float]:
    """Per picture, the count errors summed over the slices (or projections) as % of their
    objects, through analysis.analyse_image (summed: a mean of ratios is ruled by slices of 0
    or 1 object)."""
    from devolearn_web.analysis import analyse_image
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.training.simulator.held_out import (
        held_out_projections,
        held_out_samples,
        learned_visible_caps,
    )

    registry = ModelRegistry(models_dir)
    caps = learned_visible_caps(registry.card(model))

    def found(image: np.ndarray) -> int:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        result, _ = analyse_image(registry, model, buffer.getvalue(), "slice.png")
        return result.to_json()["count"]

    errors = dict.fromkeys(rows(model), 0)
    objects = dict.fromkeys(rows(model), 0)

    def tally(name: str, image: np.ndarray, truth: int) -> None:
        errors[name] += abs(found(image) - truth)
        objects[name] += truth

    for index, (image, truth, labels) in enumerate(
        held_out_samples(model, count, STREAM, visible_caps=caps)
    ):
        for name, change in variants(model).items():
            tally(name, change(image, labels, index), truth)
    if model == "nucleus":
        for image, truth, _ in held_out_samples(
            model, count, STREAM, uneven=True, visible_caps=caps
        ):
            tally(UNEVEN, image, truth)
        for name, uneven in ((PROJECTIONS, False), (UNEVEN_PROJECTIONS, True)):
            for image, truth, _ in held_out_projections(count, STREAM, uneven=uneven):
                tally(name, image, truth)
    return {name: 100.0 * errors[name] / max(1, objects[name]) for name in errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="nucleus")
    parser.add_argument("--models-dir", type=Path, action="append", required=True)
    parser.add_argument(
        "--count", type=int, default=16, help="test slices and projections (over two seeds)"
    )
    args = parser.parse_args()
    results = {folder: count_errors(args.model, folder, args.count) for folder in args.models_dir}
    print(
        f"{args.model} count error, {args.count} simulated test slices (nucleus: and "
        f"{args.count} projections), through the app"
    )
    print("| picture | " + " | ".join(str(folder) for folder in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for name in rows(args.model):
        cells = " | ".join(f"{results[folder][name]:.1f}%" for folder in results)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
