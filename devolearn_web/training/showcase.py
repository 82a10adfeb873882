"""Make the home page's time-lapse and the simulated gallery examples from the shipped models.

Run after the models are trained: `python -m devolearn_web.training.showcase`. It simulates
embryos from seeds never used in training, tuning or testing (3000 and up), runs them through
the app's own pipelines and writes PNG/TIFF files into static/.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from skimage.segmentation import find_boundaries

from devolearn_web.catalogue import LINEAGE_ORDER
from devolearn_web.imaging import decode_image, to_display_png
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry
from devolearn_web.training.simulator import (
    write_lineage_dataset,
    write_membrane_dataset,
    write_nucleus_dataset,
)

TIMELAPSE_SEED = 3000
EXAMPLE_SEEDS = {"nucleus": 3001, "membrane": 3002, "lineage": 3003}
TIMELAPSE_FRAMES = 16
OUTLINE_RGBA = (255, 64, 160, 255)


def _outline_overlay(labels: np.ndarray) -> Image.Image:
    """Transparent RGBA picture with each labelled object's boundary drawn (labels: int HxW)."""
    overlay = np.zeros((*labels.shape, 4), dtype=np.uint8)
    overlay[find_boundaries(labels, mode="inner")] = OUTLINE_RGBA
    return Image.fromarray(overlay, mode="RGBA")


def make_timelapse(registry: ModelRegistry, out_dir: Path, work: Path) -> dict:
    """Frames of one simulated embryo with the nucleus model's outlines; returns the manifest."""
    source = write_lineage_dataset(work / "timelapse", [TIMELAPSE_SEED], TIMELAPSE_FRAMES)
    with open(source / "populations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("frame_*.png"):
        stale.unlink()
    frames = []
    for index, row in enumerate(rows):
        image = decode_image((source / "images" / row["file"]).read_bytes(), row["file"])
        nuclei = predict(registry, "nucleus", image)
        lineage = predict(registry, "lineage", image)
        input_name, overlay_name = f"frame_{index:03d}_input.png", f"frame_{index:03d}_overlay.png"
        (out_dir / input_name).write_bytes(to_display_png(image.pixels))
        _outline_overlay(nuclei.labels).save(out_dir / overlay_name, optimize=True)
        true_cells = sum(int(row[key]) for key in LINEAGE_ORDER)
        frames.append(
            {
                "input": input_name,
                "overlay": overlay_name,
                "time_min": round(float(row["minutes"])),
                "counts": {
                    "nuclei found": nuclei.count,
                    "cells (lineage model)": lineage.total,
                    "cells (truth)": true_cells,
                },
            }
        )
    manifest = {
        "title": (
            "A simulated embryo (seed 3000, never seen in training) from the 1-cell stage to "
            "about 250 AB cells; outlines: nuclei found by the nucleus model"
        ),
        "frame_interval_ms": 600,
        "frames": frames,
    }
    (out_dir / "timelapse.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def make_examples(out_dir: Path, work: Path) -> list[Path]:
    """Simulated gallery examples: a 16-bit nucleus z-stack, a membrane slice, a projection."""
    written = []
    nucleus = write_nucleus_dataset(
        work / "nucleus", [EXAMPLE_SEEDS["nucleus"]], 3, shape=(12, 512, 708), projections=False
    )
    stack = tifffile.imread(nucleus / "01" / "t001.tif")
    brightest = int(np.argmax(stack.reshape(stack.shape[0], -1).mean(axis=1)))
    path = out_dir / "simulated_nucleus_slice_16bit.tif"
    tifffile.imwrite(path, stack[brightest], compression="zlib")
    written.append(path)
    # Every other slice at half the width and height keeps the example small in the repository.
    z, height, width = stack.shape
    small = stack[::2, : height // 2 * 2, : width // 2 * 2].astype(np.float32)
    small = small.reshape(small.shape[0], height // 2, 2, width // 2, 2).mean(axis=(2, 4))
    path = out_dir / "simulated_nucleus_stack_16bit.tif"
    tifffile.imwrite(path, small.astype(np.uint16), compression="zlib", metadata={"axes": "ZYX"})
    written.append(path)

    membrane = write_membrane_dataset(work / "membrane", [EXAMPLE_SEEDS["membrane"]], 4)
    membrane_stack = tifffile.imread(membrane / "01" / "t001.tif")
    middle = membrane_stack[membrane_stack.shape[0] // 2]
    path = out_dir / "simulated_membrane_slice.png"
    scaled = (middle.astype(np.float32) / max(1, int(middle.max())) * 255).astype(np.uint8)
    Image.fromarray(scaled).save(path, optimize=True)
    written.append(path)

    lineage = write_lineage_dataset(work / "lineage", [EXAMPLE_SEEDS["lineage"]], 5)
    path = out_dir / "simulated_embryo_projection.png"
    shutil.copyfile(lineage / "images" / f"{EXAMPLE_SEEDS['lineage']}_003.png", path)
    written.append(path)
    with open(lineage / "populations.csv", newline="") as handle:
        truth = next(row for row in csv.DictReader(handle) if row["frame"] == "3")
    print("true populations of the projection:", {key: truth[key] for key in LINEAGE_ORDER})
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--static-dir", type=Path, default=Path("static"))
    parser.add_argument("--skip-timelapse", action="store_true")
    args = parser.parse_args()
    registry = ModelRegistry(args.models_dir)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for path in make_examples(args.static_dir / "examples", work):
            print(f"wrote {path}")
        if not args.skip_timelapse:
            manifest = make_timelapse(registry, args.static_dir / "home", work)
            print(f"wrote {len(manifest['frames'])} time-lapse frames")


if __name__ == "__main__":
    main()
