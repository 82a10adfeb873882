"""The benchmark harness (python -m bench): statistics, the table, inputs, model folders, a run."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
from werkzeug.test import EnvironBuilder

from bench.cli import SECTIONS, main, parse_sections
from bench.inputs import stack_tiff_bytes, synthetic_embryo
from bench.models import float_only_copy, quantized_file
from bench.report import Row, markdown_table
from bench.server import multipart_body
from bench.stats import Summary, alternate, percentile


@pytest.mark.parametrize("percent", [0, 50, 90, 95, 100])
def test_percentile_matches_numpy(percent: float) -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    assert percentile(values, percent) == pytest.approx(np.percentile(values, percent))


def test_summary_of_measurements() -> None:
    summary = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (summary.median, summary.count) == (2.5, 4)
    assert summary.p95 == pytest.approx(np.percentile([1, 2, 3, 10], 95))
    with pytest.raises(ValueError):
        Summary.of([])


def test_alternate_interleaves_contenders_and_drops_warmup() -> None:
    calls: list[str] = []
    result = alternate(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats=3,
        warmup=1,
        settle_seconds=0,
    )
    assert calls == ["a", "b"] * 4
    assert result["a"].count == result["b"].count == 3


def test_parse_sections_keeps_table_order_and_rejects_unknown_names() -> None:
    assert parse_sections("memory,latency") == ["latency", "memory"]
    assert parse_sections(None) == list(SECTIONS)
    with pytest.raises(argparse.ArgumentTypeError, match="speed"):
        parse_sections("latency,speed")


def test_markdown_table_has_one_aligned_line_per_row() -> None:
    rows = [
        Row("1", "nucleus: HTTP", "50.0 ms", "60.0 ms", "ORT", 1.1, "<= 1.25x", True),
        Row("2", "peak", "400 MB", target="<= 300 MB", met=False),
    ]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1
    assert "| 1.10x" in lines[2] and "| yes" in lines[2] and "| NO" in lines[3]


def test_multipart_body_is_read_back_by_werkzeug() -> None:
    body, content_type = multipart_body(b"\x89PNG...", "a b.png", {"threshold": "0.3"})
    builder = EnvironBuilder(method="POST", data=body, content_type=content_type)
    request = builder.get_request()
    upload = request.files["file"]
    try:
        assert request.form["threshold"] == "0.3"
        assert upload.filename == "a b.png"
        assert upload.read() == b"\x89PNG..."
    finally:
        upload.close()
        builder.close()


def test_float_only_copy_links_files_and_drops_quantized(tiny_models_dir: Path, tmp_path) -> None:
    source = tmp_path / "models"
    source.mkdir()
    for path in tiny_models_dir.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    (source / "nucleus.int8.onnx").write_bytes(b"int8")
    card = json.loads((source / "nucleus.json").read_text())
    card["quantized"] = {"file": "nucleus.int8.onnx", "serve": True}
    (source / "nucleus.json").write_text(json.dumps(card))
    assert quantized_file(source, "nucleus") == source / "nucleus.int8.onnx"

    copy = float_only_copy(source, tmp_path / "float32")
    assert quantized_file(copy, "nucleus") is None
    assert (copy / "nucleus.onnx").is_symlink()
    assert (copy / "nucleus.onnx").read_bytes() == (source / "nucleus.onnx").read_bytes()


def test_synthetic_inputs_have_the_nucleus_frame_size() -> None:
    embryo = synthetic_embryo((64, 80), nuclei=10)
    assert embryo.shape == (64, 80) and embryo.dtype == np.uint8 and embryo.max() > 100
    import tifffile

    stack = tifffile.imread(io.BytesIO(stack_tiff_bytes(embryo, slices=3)))
    assert stack.shape == (3, 64, 80) and stack.dtype == np.uint16


@pytest.mark.slow
def test_bench_prints_memory_and_cold_start_rows_for_tiny_models(
    tiny_models_dir: Path, capsys
) -> None:
    pytest.importorskip("gunicorn")
    assert (
        main(["--quick", "--only", "memory,coldstart", "--models-dir", str(tiny_models_dir)]) == 0
    )
    table = capsys.readouterr().out
    assert "peak RSS of one worker" in table
    assert "spawn -> first nucleus answer" in table
    assert "worst case: peak RSS of one worker, 4 x 36 MP" in table
    assert table.count("| 2 memory") == 3 and table.count("| 3 cold start") == 3
    assert "first boot, empty optimised-model cache" in table


def test_the_forwards_default_to_the_cores_this_process_may_use() -> None:
    import os

    from bench.cli import build_parser

    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # as under `taskset -c 0` or a 1-CPU cpuset
        assert build_parser().parse_args([]).threads == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert build_parser().parse_args([]).threads == len(allowed)


@pytest.mark.slow
def test_bench_jobs_section_runs_one_and_two_rq_workers(tiny_models_dir: Path, capsys) -> None:
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    assert main(["--quick", "--only", "jobs", "--models-dir", str(tiny_models_dir)]) == 0
    table = capsys.readouterr().out
    assert "16 frames 708x512, 1 RQ worker" in table
    assert "16 frames 708x512, 2 RQ workers" in table
    assert table.count("frames/s") == 2 and "| 1 worker" in table


@pytest.mark.parametrize("model", ["nucleus", "membrane"])
def test_bench_microscope_prints_every_picture_for_each_model_folder(
    model: str, tiny_models_dir: Path, models_copy: Path, capsys, monkeypatch
) -> None:
    from bench import microscope

    folders = [str(tiny_models_dir), str(models_copy)]
    monkeypatch.setattr(
        "sys.argv",
        ["microscope", "--model", model, "--count", "2", *(f"--models-dir={f}" for f in folders)],
    )
    microscope.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{model} count error")
    rows = [line for line in lines if line.startswith("| ") and "%" in line]
    pictures = [row.split(" | ")[0][2:] for row in rows]
    assert pictures == list(microscope.rows(model))
    assert "recorded with 0.5x the pixels per side" in pictures
    assert (microscope.UNEVEN in pictures) is (model == "nucleus")
    assert (microscope.UNEVEN_PROJECTIONS in pictures) is (model == "nucleus")
    assert all(row.count("%") == 2 for row in rows)
