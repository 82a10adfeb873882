"""How often founder names are right on simulated recordings that start at 1-4 cells.

Truth mode (default): the simulator's own tracks and centres (turned and flipped at random),
so the measure is of the naming alone. Model mode (--model): a recording rendered in the Cell
Tracking Challenge layout, segmented by the shipped nucleus model, assembled in 3D and tracked
as the app does, each found track matched to the true nucleus it overlaps most.

    PYTHONPATH=. python -m bench.founders --seeds 2000-2039 --starts 1,2,3,4 --times 40,70,100
    PYTHONPATH=. python -m bench.founders --model --seeds 2000 --starts 4 --times 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.founders import DIVISION_MINUTES, name_founders


def founder_name(true_name: str) -> str | None:
    """The founder name the naming would give a simulated cell (None: not a founder)."""
    name = "Z2/Z3" if true_name in ("Z2", "Z3") else true_name
    return name if name in DIVISION_MINUTES else None


@dataclass
class Tally:
    """Founders present, named right, named wrong; recordings, and those with no wrong name."""

    founders: int = 0
    right: int = 0
    wrong: int = 0
    recordings: int = 0
    clean: int = 0
    seconds: float = 0.0

    def add(self, names: dict[int, str], truth: dict[int, str], seconds: float) -> None:
        founders = {label: name for label, true in truth.items() if (name := founder_name(true))}
        wrong = sum(1 for label, name in names.items() if founders.get(label) != name)
        self.founders += len(founders)
        self.right += sum(1 for label, name in names.items() if founders.get(label) == name)
        self.wrong += wrong
        self.recordings += 1
        self.clean += wrong == 0
        self.seconds += seconds

    def row(self, start: int, times: int) -> str:
        named = self.right + self.wrong
        return (
            f"| {start} | {times} | {self.recordings} | {self.clean / self.recordings:.0%} "
            f"| {self.right}/{named} ({self.right / max(named, 1):.1%}) "
            f"| {self.right}/{self.founders} ({self.right / max(self.founders, 1):.0%}) "
            f"| {self.seconds / self.recordings:.2f} |"
        )


HEADER = (
    "| start (cells) | time points | recordings | with no wrong name | names right / given "
    "| founders named right / present | s per naming |\n|---|---|---|---|---|---|---|"
)


def truth_run(seed: int, start: int, times: int) -> tuple[dict[int, str], dict[int, str], float]:
    """(names given, true names by label, seconds) on the simulator's own tracks."""
    from devolearn_web.training.simulator.ctc_recording import truth_tracking
    from devolearn_web.training.simulator.embryo import simulate_embryo

    embryo = simulate_embryo(seed)
    tracks, positions, truth = truth_tracking(embryo, start, times, np.random.default_rng(seed))
    began = time.perf_counter()
    naming = name_founders(tracks, positions)
    return naming.names, truth, time.perf_counter() - began


def model_run(seed: int, start: int, times: int) -> tuple[dict[int, str], dict[int, str], float]:
    """(names given, true name of each found track, seconds) through the shipped model."""
    from bench.tracking import TWELVE_BITS
    from devolearn_web.assembly3d import assemble_3d
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.scale import ScaleRequest
    from devolearn_web.stack_assembly import _centres
    from devolearn_web.stack_pipeline import collect_results
    from devolearn_web.stacks import FrameStack
    from devolearn_web.tracking import track_nuclei
    from devolearn_web.training.simulator.ctc_recording import write_ctc_recording
    from devolearn_web.training.simulator.embryo import simulate_embryo

    registry = ModelRegistry(Path(__file__).resolve().parents[1] / "models")
    embryo = simulate_embryo(seed)
    with tempfile.TemporaryDirectory() as scratch:
        recording = write_ctc_recording(Path(scratch), seed, start, times, embryo=embryo)
        scale = ScaleRequest(pixel_size_um=recording.um_per_px)
        found, truth_volumes = [], []
        for t in range(times):
            stack = tifffile.imread(Path(scratch) / "01" / f"t{t:03d}.tif")
            positions = tuple({"z": z} for z in range(stack.shape[0]))
            frames = FrameStack("stack", stack, positions, {"slider": ["z"]}, scale=TWELVE_BITS)
            results = collect_results(registry, "nucleus", frames, scale_request=scale)
            found.append(assemble_3d([r.labels for r in results], recording.z_step_um).labels)
            truth_volumes.append(
                tifffile.imread(Path(scratch) / "01_GT" / "SEG" / f"man_seg{t:03d}.tif")
            )
    spacing = (recording.z_step_um / recording.um_per_px, 1.0, 1.0)
    tracking = track_nuclei(found, spacing)
    volumes = [tracking.relabel(t, v) for t, v in enumerate(found)]
    began = time.perf_counter()
    naming = name_founders(tracking.tracks, [_centres(v, spacing) for v in volumes])
    seconds = time.perf_counter() - began
    truth = {}
    for track in tracking.tracks:  # the true nucleus it overlaps most where it first appears
        mask = volumes[track.begin] == track.track
        labels = truth_volumes[track.begin][mask]
        labels = labels[labels > 0]
        if labels.size:
            truth[track.track] = embryo.cells.names[int(np.bincount(labels).argmax()) - 1]
    return naming.names, truth, seconds


def seed_range(text: str) -> list[int]:
    """'2000-2039' or '2000,2005' as a list of seeds."""
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="2000-2039")
    parser.add_argument("--starts", default="1,2,3,4")
    parser.add_argument("--times", default="40,70,100")
    parser.add_argument("--model", action="store_true")
    args = parser.parse_args()
    run = model_run if args.model else truth_run
    print(HEADER)
    for start in (int(part) for part in args.starts.split(",")):
        for times in (int(part) for part in args.times.split(",")):
            tally = Tally()
            for seed in seed_range(args.seeds):
                tally.add(*run(seed, start, times))
            print(tally.row(start, times), flush=True)


if __name__ == "__main__":
    main()
