"""3D nuclei and tracks on a simulated 3D+t recording (seed never used in training), measured
with the Cell Tracking Challenge's own SEG, DET and TRA (py-ctcmetrics); seconds per time point.

    PYTHONPATH=. python -m bench.tracking [--cells 24] [--times 8] [--seed 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from io import BytesIO
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
from devolearn_web.training.simulator.embryo import simulate_embryo
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    random_stack_view,
    render_nucleus_stack,
)

SHAPE = (35, 256, 354)


def truth_tracks(embryo, labels: list[np.ndarray]) -> str:
    """man_track.txt of the simulator's cells seen in the recording (label = cell id + 1)."""
    seen: dict[int, list[int]] = {}
    for t, volume in enumerate(labels):
        for label in np.unique(volume[volume > 0]):
            seen.setdefault(int(label), []).append(t)
    lines = []
    for label, times in sorted(seen.items()):
        parent = int(embryo.cells.parent[label - 1]) + 1
        lines.append(f"{label} {min(times)} {max(times)} {parent if parent in seen else 0}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2000)
    args = parser.parse_args()
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    embryo = simulate_embryo(args.seed)
    rng = np.random.default_rng((args.seed, 22))
    view = random_stack_view(rng, embryo, SHAPE)
    look = NucleusLook.draw(rng)
    start = embryo.grid_time_with_total(args.cells)
    registry = ModelRegistry(Path("models"))
    scale = ScaleRequest(pixel_size_um=view.um_per_px)
    truth, found, seconds = [], [], {"segment": 0.0, "assemble": 0.0, "track": 0.0}
    for t in range(args.times):
        stack, labels = render_nucleus_stack(embryo, start + t, view, look, rng)
        truth.append(labels)
        frames = FrameStack(
            "stack", stack, tuple({"z": z} for z in range(SHAPE[0])), {}, scale=1 / 4095
        )
        began = time.perf_counter()
        results = collect_results(registry, "nucleus", frames, scale_request=scale)
        middle = time.perf_counter()
        found.append(assemble_3d([r.labels for r in results], view.z_step_um).labels)
        seconds["segment"] += middle - began
        seconds["assemble"] += time.perf_counter() - middle
    began = time.perf_counter()
    tracking = track_nuclei(found, (view.z_step_um / view.um_per_px, 1.0, 1.0))
    seconds["track"] = time.perf_counter() - began
    volumes = [tracking.relabel(t, v) for t, v in enumerate(found)]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        zipfile.ZipFile(BytesIO(ctc_zip(volumes, tracking.tracks))).extractall(root / "RES")
        for sub in ("TRA", "SEG"):
            (root / "GT" / sub).mkdir(parents=True)
        for t, labels in enumerate(truth):
            tifffile.imwrite(root / "GT" / "TRA" / f"man_track{t:03d}.tif", labels)
            tifffile.imwrite(root / "GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
        (root / "GT" / "TRA" / "man_track.txt").write_text(truth_tracks(embryo, truth))
        scores = evaluate_sequence(str(root / "RES"), str(root / "GT"), ["SEG", "DET", "TRA"], 1)
    true_counts = [len(np.unique(v)) - 1 for v in truth]
    print(
        f"seed {args.seed}, {args.times} time points, "
        f"{true_counts[0]} to {true_counts[-1]} true nuclei"
    )
    print(f"SEG {scores['SEG']:.3f}  DET {scores['DET']:.3f}  TRA {scores['TRA']:.3f}")
    per = {k: round(v / args.times, 2) for k, v in seconds.items()}
    print(f"seconds per time point: {per}; tracks {len(tracking.tracks)}")


if __name__ == "__main__":
    main()
