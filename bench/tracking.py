"""3D nuclei and tracks on simulated 3D+t recordings (seeds never used in training), written in
the Cell Tracking Challenge layout and measured with the challenge's own SEG, DET and TRA
(py-ctcmetrics); seconds per time point for segmentation, 3D assembly and tracking.

    PYTHONPATH=. python -m bench.tracking [--cells 24] [--times 8] [--seed 2000]
    PYTHONPATH=. python -m bench.tracking --stages 4,24,100,200,350 --times 3 [--keep DIR]
    PYTHONPATH=. python -m bench.tracking --stages 4,28,100 --times 3 --seed 1000 --cache DIR
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.assembly3d import assemble_3d
from devolearn_web.ctc import ctc_zip
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import ScaleRequest
from devolearn_web.stack_pipeline import collect_results
from devolearn_web.stacks import FrameStack
from devolearn_web.tracking import track_nuclei
from devolearn_web.training.simulator.ctc_recording import write_ctc_recording
from devolearn_web.training.simulator.embryo import simulate_embryo

# The recordings' values are 12-bit, stored in 16 bits.
TWELVE_BITS = 1 / 4095


@dataclass(frozen=True)
class Measured:
    """The challenge's measures on one recording, its size, and seconds per time point."""

    cells: int
    times: int
    true_counts: list[int]
    found_counts: list[int]
    true_divisions: int
    found_divisions: int
    seg: float
    det: float
    tra: float
    seconds: dict[str, float]

    def row(self) -> str:
        per = self.seconds
        return (
            f"| {self.cells} | {self.true_counts[0]}→{self.true_counts[-1]} "
            f"| {self.found_counts[0]}→{self.found_counts[-1]} "
            f"| {self.true_divisions} / {self.found_divisions} "
            f"| {self.seg:.3f} | {self.det:.3f} | {self.tra:.3f} "
            f"| {per['segment']:.1f} | {per['assemble']:.2f} | {per['track']:.2f} |"
        )


TABLE_HEADER = (
    "| stage (cells) | true nuclei | found (3D) | divisions true / found | SEG | DET | TRA "
    "| s/time point: segment | assemble | track |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def divisions_in(man_track: str) -> int:
    """Divisions in a man_track.txt / res_track.txt (pairs of tracks sharing a parent)."""
    parents = [int(line.split()[3]) for line in man_track.splitlines() if line.strip()]
    return sum(1 for parent in parents if parent) // 2


def measure_recording(folder: Path, registry: ModelRegistry, cache: Path | None = None) -> Measured:
    """Segment, assemble and track <folder>/01, write 01_RES, score it against 01_GT; the 3D
    nuclei are kept in (and taken from) `cache`/<folder name>.npz when given, so tracking can
    be measured again without segmenting again (seconds then count tracking only)."""
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    info = json.loads((folder / "recording.json").read_text())
    scale = ScaleRequest(pixel_size_um=info["um_per_px"])
    stacks = sorted((folder / "01").glob("t*.tif"))
    found, seconds = [], {"segment": 0.0, "assemble": 0.0, "track": 0.0}
    kept = cache / f"{folder.name}_times{len(stacks)}.npz" if cache else None
    if kept is not None and kept.exists():
        with np.load(kept) as held:
            found = list(held["found"])
    for path in stacks if not found else []:
        stack = tifffile.imread(path)
        positions = tuple({"z": z} for z in range(stack.shape[0]))
        frames = FrameStack("stack", stack, positions, {"slider": ["z"]}, scale=TWELVE_BITS)
        began = time.perf_counter()
        results = collect_results(registry, "nucleus", frames, scale_request=scale)
        middle = time.perf_counter()
        found.append(assemble_3d([r.labels for r in results], info["z_step_um"]).labels)
        seconds["segment"] += middle - began
        seconds["assemble"] += time.perf_counter() - middle
    if kept is not None and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(kept, found=np.stack(found).astype(np.uint16))
    began = time.perf_counter()
    tracking = track_nuclei(found, (info["z_step_um"] / info["um_per_px"], 1.0, 1.0))
    seconds["track"] = time.perf_counter() - began
    volumes = [tracking.relabel(t, v) for t, v in enumerate(found)]
    result = folder / "01_RES"
    zipfile.ZipFile(io.BytesIO(ctc_zip(volumes, tracking.tracks))).extractall(result)
    with contextlib.redirect_stdout(io.StringIO()):  # py-ctcmetrics prints its whole result
        scores = evaluate_sequence(
            str(result), str(folder / "01_GT"), ["SEG", "DET", "TRA"], threads=1
        )
    return Measured(
        cells=info["cells"],
        times=len(stacks),
        true_counts=info["true_counts"],
        found_counts=[len(np.unique(v)) - 1 for v in volumes],
        true_divisions=divisions_in((folder / "01_GT" / "TRA" / "man_track.txt").read_text()),
        found_divisions=divisions_in((result / "res_track.txt").read_text()),
        seg=float(scores["SEG"]),
        det=float(scores["DET"]),
        tra=float(scores["TRA"]),
        seconds={k: v / len(stacks) for k, v in seconds.items()},
    )


def sweep(
    stages: list[int],
    times: int,
    seed: int,
    registry: ModelRegistry,
    keep: Path | None = None,
    cache: Path | None = None,
) -> list[Measured]:
    """One recording per stage (a new folder each, under `keep` when given), measured."""
    embryo = simulate_embryo(seed)
    measured = []
    with tempfile.TemporaryDirectory() as scratch:
        root = keep or Path(scratch)
        for cells in stages:
            folder = root / f"seed{seed}_cells{cells}"
            write_ctc_recording(folder, seed, cells, times, embryo=embryo)
            measured.append(measure_recording(folder, registry, cache))
            print(measured[-1].row(), flush=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=24, help="the stage of a single recording")
    parser.add_argument("--stages", help="comma-separated stages (cells) to sweep instead")
    parser.add_argument("--times", type=int, default=8, help="time points per recording")
    parser.add_argument("--seed", type=int, default=2000, help="a test seed (2000 or 2001)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--keep", type=Path, help="keep the recordings (CTC layout) here")
    parser.add_argument("--cache", type=Path, help="keep the model's 3D nuclei here, reuse them")
    args = parser.parse_args()
    stages = [int(s) for s in args.stages.split(",")] if args.stages else [args.cells]
    print(f"seed {args.seed}, {args.times} time points a minute apart per recording\n")
    print(TABLE_HEADER, flush=True)
    measured = sweep(
        stages, args.times, args.seed, ModelRegistry(args.models_dir), args.keep, args.cache
    )
    if len(measured) > 1:
        mean = {k: np.mean([getattr(m, k) for m in measured]) for k in ("seg", "det", "tra")}
        print(f"\nmean SEG {mean['seg']:.3f}  DET {mean['det']:.3f}  TRA {mean['tra']:.3f}")


if __name__ == "__main__":
    main()
