"""`flask --app wsgi devolearn predict <model> <files or folders> --out DIR`: batch, no server.

Writes, per input file, the same files the API's downloads give (objects CSV, 16-bit label TIFF,
probability TIFF, ImageJ ROI set and a mask PNG for one image; the lineage CSV), plus one
summary.csv with a row per frame of every file. A file that cannot be read is reported and
skipped; the exit status is 1 when any was.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click
from flask.cli import with_appcontext

from devolearn_web.analysis import Limits, Upload, stack_results
from devolearn_web.catalogue import LINEAGE_ORDER, MODEL_NAMES, entry
from devolearn_web.downloads import build_download
from devolearn_web.errors import DevoLearnError
from devolearn_web.options import PredictOptions
from devolearn_web.pipelines import LineageResult
from devolearn_web.registry import get_registry
from devolearn_web.stack_pipeline import frame_axis
from devolearn_web.stacks import parse_axes_override

INPUT_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".mov", ".mp4", ".avi"}
)
SEGMENTATION_OUTPUTS = ("csv", "tiff", "probability-tiff", "roi")
# The server's default size limits, and no download limit: the command writes every file.
CLI_LIMITS = Limits()


@click.group("devolearn")
def devolearn() -> None:
    """DevoLearn batch commands (run the models on files, without a server)."""


def collect_inputs(paths: tuple[Path, ...]) -> list[Path]:
    """The image and movie files named, or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = (p for p in sorted(path.rglob("*")) if p.is_file())
            files.extend(p for p in found if p.suffix.lower() in INPUT_SUFFIXES)
        else:
            files.append(path)
    return files


@devolearn.command("predict")
@click.argument("model", type=click.Choice(MODEL_NAMES))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the CSVs and TIFFs (created when missing).",
)
@click.option(
    "--threshold", type=click.FloatRange(0, 1), default=None, help="Default: the model card's."
)
@click.option("--axes", default=None, help="Stack axes outermost first, e.g. Z, T or TZ.")
@with_appcontext
def predict_command(
    model: str,
    paths: tuple[Path, ...],
    out_dir: Path,
    threshold: float | None,
    axes: str | None,
) -> None:
    """Run MODEL on every image, stack and movie in PATHS and write the results to --out."""
    registry = get_registry()
    try:
        task = registry.card(model).task
        # Every slice alone (no lineage projection), as this command has always analysed them.
        options = PredictOptions(
            threshold=threshold, axes=parse_axes_override(axes), projection="none"
        )
    except DevoLearnError as error:
        raise click.ClickException(error.message) from error
    files = collect_inputs(paths)
    if not files:
        raise click.ClickException("No image or movie files were found in the paths given.")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_rows: list[list] = []
    failures: list[str] = []
    used_stems: set[str] = set()
    with click.progressbar(
        files, label=f"{model}: {len(files)} file(s)", item_show_func=_item_name
    ) as progress:
        for path in progress:
            stem = _unique_stem(path, used_stems)
            try:
                results, positions, axis, calibration = _run_file(
                    registry, model, task, path, options
                )
            except DevoLearnError as error:
                failures.append(f"{path}: {error.message}")
                continue
            _write_outputs(out_dir, stem, results, positions, axis, calibration)
            summary_rows.extend(_summary_rows(path, results))
    _write_summary(out_dir / "summary.csv", model, summary_rows)
    click.echo(f"Wrote results for {len(files) - len(failures)} file(s) to {out_dir}")
    for failure in failures:
        click.echo(f"Skipped {failure}", err=True)
    if failures:
        raise SystemExit(1)


def _run_file(registry, model: str, task: str, path: Path, options: PredictOptions):
    """Results, frame positions, the stack axis ('Z' or 'T') and pixel size for one file."""
    with Upload(path.read_bytes(), path.name) as upload:
        decoded = upload.decode(options, CLI_LIMITS, task)
    results = stack_results(registry, model, decoded, options)
    stack = decoded.stack
    if decoded.single:
        return results, ({},), "Z", stack.calibration
    return results, stack.positions, frame_axis(stack), stack.calibration


def _write_outputs(out_dir: Path, stem: str, results, positions, axis: str, calibration) -> None:
    formats = ("csv",) if isinstance(results[0], LineageResult) else SEGMENTATION_OUTPUTS
    if len(results) == 1 and not isinstance(results[0], LineageResult):
        formats += ("png",)
    for requested in formats:
        body, _, filename = build_download(requested, stem, results, positions, axis, calibration)
        (out_dir / filename).write_bytes(body)


def _summary_rows(path: Path, results) -> list[list]:
    if isinstance(results[0], LineageResult):
        return [
            [str(path), index, *(r.populations[key] for key in LINEAGE_ORDER), r.total]
            for index, r in enumerate(results)
        ]
    return [[str(path), index, r.count] for index, r in enumerate(results)]


def _write_summary(path: Path, model: str, rows: list[list]) -> None:
    header = (
        ["file", "frame", *LINEAGE_ORDER, "total"]
        if not entry(model).is_segmentation
        else ["file", "frame", "count"]
    )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, suffix = path.stem, 2
    candidate = stem
    while candidate in used:
        candidate, suffix = f"{stem}_{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def _item_name(path: Path | None) -> str:
    return path.name if path is not None else ""


def init_app(app) -> None:
    """Add the `devolearn` command group to the app's `flask` CLI."""
    app.cli.add_command(devolearn)
