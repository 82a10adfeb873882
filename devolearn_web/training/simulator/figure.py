"""Side-by-side figure of simulated and real images (python -m ...simulator.figure OUT.png)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from devolearn_web.training.simulator.embryo import simulate_embryo
from devolearn_web.training.simulator.render_membrane import (
    MembraneLook,
    membrane_to_uint16,
    random_membrane_view,
    render_membrane_slice,
    slice_geometry,
)
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    random_projection_view,
    random_stack_view,
    render_nucleus_projection,
    render_nucleus_stack,
)

TILE_WIDTH = 420
LABEL_HEIGHT = 18


def _to_8bit(image: np.ndarray) -> np.ndarray:
    """Stretch an image (any dtype, HxW) to uint8 between its 0.5th and 99.8th percentiles."""
    low, high = np.percentile(image, [0.5, 99.8])
    return (np.clip((image - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)


def _tile(image: np.ndarray, caption: str) -> Image.Image:
    picture = Image.fromarray(image)
    height = round(picture.height * TILE_WIDTH / picture.width)
    picture = picture.resize((TILE_WIDTH, height), Image.Resampling.BILINEAR)
    tile = Image.new("L", (TILE_WIDTH, height + LABEL_HEIGHT), 0)
    tile.paste(picture, (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((4, 3), caption, fill=255)
    return tile


def build_figure(samples_dir: Path, seed: int = 0) -> Image.Image:
    """Simulated vs real projection, simulated vs real membrane slice, two nucleus slices."""
    embryo = simulate_embryo(seed)
    rng = np.random.default_rng(seed)
    real_projection = np.asarray(Image.open(samples_dir / "embryo_sample.png"))[..., 1]
    real_membrane = np.asarray(Image.open(samples_dir / "seg_sample.jpg").convert("L"))

    t_projection = embryo.grid_time_with_total(110)
    view = random_projection_view(rng, embryo, real_projection.shape)
    projection, _ = render_nucleus_projection(
        embryo, t_projection, view, NucleusLook.draw(rng), rng
    )

    t_membrane = embryo.grid_time_with_total(8)
    view = random_membrane_view(rng, embryo, (40, *real_membrane.shape))
    geometry = slice_geometry(embryo, t_membrane, view, 20)
    membrane = membrane_to_uint16(
        render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng)
    )

    t_stack = embryo.grid_time_with_total(60)
    view = random_stack_view(rng, embryo, (35, 256, 354))
    stack, _ = render_nucleus_stack(embryo, t_stack, view, NucleusLook.draw(rng), rng)
    tiles = [
        _tile(
            projection, f"simulated projection, {len(embryo.cells.alive_at(t_projection))} cells"
        ),
        _tile(real_projection, "real: embryo_sample.png (green channel)"),
        _tile(
            _to_8bit(membrane),
            f"simulated membrane slice, {len(embryo.cells.alive_at(t_membrane))} cells",
        ),
        _tile(real_membrane, "real: seg_sample.jpg"),
        _tile(
            _to_8bit(stack[17]),
            f"simulated nucleus z-slice 17/35, {len(embryo.cells.alive_at(t_stack))} cells",
        ),
        _tile(_to_8bit(stack[28]), "the same stack, deeper slice 28/35 (dimmer, blurrier)"),
    ]
    rows = [tiles[i : i + 2] for i in range(0, len(tiles), 2)]
    heights = [max(tile.height for tile in row) for row in rows]
    figure = Image.new("L", (2 * TILE_WIDTH + 6, sum(heights) + 6 * len(rows)), 40)
    top = 0
    for row, height in zip(rows, heights, strict=True):
        for column, tile in enumerate(row):
            figure.paste(tile, (column * (TILE_WIDTH + 6), top))
        top += height + 6
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "out", type=Path, help="PNG file to write, e.g. docs/images/sim_vs_real.png"
    )
    parser.add_argument("--samples", type=Path, default=Path("../shared/samples"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build_figure(args.samples, args.seed).save(args.out)


if __name__ == "__main__":
    main()
