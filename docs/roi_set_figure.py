"""docs/images/roi_set_nucleus.png: the nucleus ROI set, read back with roifile, over the sample.

Run from the repository root: `PYTHONPATH=. python docs/roi_set_figure.py`. It runs the shipped
nucleus model on static/examples/embryo_sample.png as the API does, writes the ROI set the API's
format=roi gives, reads it back with roifile (as Fiji's ROI Manager would) and draws each
polygon and its name over the image, as Fiji shows a ROI set with "Show All" and labels.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from roifile import ImagejRoi

from devolearn_web.analysis import analyse_image
from devolearn_web.imaging import to_display_png
from devolearn_web.registry import ModelRegistry
from devolearn_web.roi_sets import roi_set_zip

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "static" / "examples" / "embryo_sample.png"
OUT = ROOT / "docs" / "images" / "roi_set_nucleus.png"
ENLARGE = 2  # outlines a pixel wide stay visible on a page


def main() -> None:
    """Write the figure and print how many ROIs it shows."""
    result, image = analyse_image(
        ModelRegistry(ROOT / "models"), "nucleus", SAMPLE.read_bytes(), SAMPLE.name
    )
    with zipfile.ZipFile(io.BytesIO(roi_set_zip([result], [{}]))) as bundle:
        rois = [ImagejRoi.frombytes(bundle.read(name)) for name in bundle.namelist()]
    gray = Image.open(io.BytesIO(to_display_png(np.asarray(image.pixels, np.float32))))
    size = (gray.width * ENLARGE, gray.height * ENLARGE)
    canvas = gray.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(canvas)
    for roi in rois:
        points = [(x * ENLARGE, y * ENLARGE) for x, y in roi.coordinates()]
        draw.polygon(points, outline=(255, 220, 0), width=2)
        x, y = np.mean(roi.coordinates(), axis=0) * ENLARGE
        draw.text((x, y), roi.name.removeprefix("label_").lstrip("0"), fill=(0, 255, 255))
    canvas.save(OUT, optimize=True)
    print(f"{OUT.relative_to(ROOT)}: {len(rois)} ROIs over {SAMPLE.name}")


if __name__ == "__main__":
    main()
