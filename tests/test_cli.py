"""`flask devolearn predict`: a folder of images and stacks in, CSVs and TIFFs out, no server."""

from __future__ import annotations

import csv

import numpy as np
import roifile
import tifffile
from PIL import Image

DISKS = [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]


def test_predict_on_a_folder_writes_csvs_and_tiffs(app, image_maker, tmp_path):
    inputs = tmp_path / "inputs"
    (inputs / "day2").mkdir(parents=True)
    image = image_maker.uint8(image_maker.disks((140, 200), DISKS, 12))
    Image.fromarray(image).save(inputs / "one.png")
    stack = np.stack([image, np.zeros_like(image)])
    tifffile.imwrite(inputs / "day2" / "stack.tif", stack, photometric="minisblack")
    (inputs / "readme.txt").write_text("not an image")
    out = tmp_path / "out"

    result = app.test_cli_runner().invoke(
        args=["devolearn", "predict", "nucleus", str(inputs), "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert "2 file(s)" in result.output
    assert tifffile.imread(out / "one_labels.tif").max() == 5
    assert tifffile.imread(out / "stack_labels.tif").shape == (2, 140, 200)
    assert (out / "one_mask.png").is_file() and (out / "stack_probability.tif").is_file()
    assert len(roifile.roiread(out / "one_RoiSet.zip")) == 5  # Fiji's ROI set: one per nucleus
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Sorted paths: day2/stack.tif (two slices) comes before one.png.
    assert [(row["frame"], row["count"]) for row in rows] == [("0", "5"), ("1", "0"), ("0", "5")]


def test_predict_reports_unreadable_files_and_goes_on(app, image_maker, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(image_maker.uint8(image_maker.disks((64, 64), [(32, 32)], 10))).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = app.test_cli_runner().invoke(
        args=["devolearn", "predict", "lineage", str(good), str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "bad.png" in result.output
    header = (tmp_path / "o" / "good.csv").read_text().splitlines()[0]
    assert header == "frame,A,E,M,P,C,D,Z,total"
