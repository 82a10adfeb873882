"""How often founder names are right on simulated recordings that start at 1-4 cells.

Truth mode (default): the simulator's own tracks and centres (turned and flipped at random),
so the measure is of the naming alone. Model mode (--model): a recording rendered in the Cell
Tracking Challenge layout, segmented by the shipped nucleus model, assembled in 3D and tracked
as the app does, each found track matched to the true nucleus it overlaps most.

    PYTHONPATH=. python -m bench.founders --seeds 2000-2039 --starts 1,2,3,4 --times 40,70,100
    PYTHONPATH=. python -m bench.founders --model --seeds 2000 --starts 4 --times 40 [--cache D]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
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


def segment_recording(seed: int, start: int, times: int, cache: Path | None = None) -> tuple:
    """(found 3D labels per time point, true labels per time point, voxel spacing in pixels) of
    a rendered recording through the shipped model; kept in `cache` (an .npz per recording) so
    the tracking and naming can be measured again without segmenting again."""
    from bench.tracking import TWELVE_BITS
    from devolearn_web.assembly3d import assemble_3d
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.scale import ScaleRequest
    from devolearn_web.stack_pipeline import collect_results
    from devolearn_web.stacks import FrameStack
    from devolearn_web.training.simulator.ctc_recording import write_ctc_recording

    kept = cache / f"seed{seed}_start{start}_times{times}.npz" if cache else None
    if kept is not None and kept.exists():
        with np.load(kept) as held:
            found, truth = list(held["found"]), list(held["truth"])
            return found, truth, tuple(float(v) for v in held["spacing"])
    registry = ModelRegistry(Path(__file__).resolve().parents[1] / "models")
    with tempfile.TemporaryDirectory() as scratch:
        recording = write_ctc_recording(Path(scratch), seed, start, times)
        scale = ScaleRequest(pixel_size_um=recording.um_per_px)
        found, truth = [], []
        for t in range(times):
            stack = tifffile.imread(Path(scratch) / "01" / f"t{t:03d}.tif")
            positions = tuple({"z": z} for z in range(stack.shape[0]))
            frames = FrameStack("stack", stack, positions, {"slider": ["z"]}, scale=TWELVE_BITS)
            results = collect_results(registry, "nucleus", frames, scale_request=scale)
            found.append(assemble_3d([r.labels for r in results], recording.z_step_um).labels)
            truth.append(tifffile.imread(Path(scratch) / "01_GT" / "SEG" / f"man_seg{t:03d}.tif"))
    spacing = (recording.z_step_um / recording.um_per_px, 1.0, 1.0)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            kept,
            found=np.stack(found).astype(np.uint16),
            truth=np.stack(truth).astype(np.uint16),
            spacing=np.array(spacing),
        )
    return found, truth, spacing


def model_run(seed: int, start: int, times: int, cache: Path | None = None) -> tuple:
    """(names given, true name of each found track, seconds, the tracker's divisions against
    the true ones) through the shipped model."""
    from devolearn_web.stack_assembly import _centres
    from devolearn_web.tracking import track_nuclei
    from devolearn_web.training.simulator.embryo import simulate_embryo

    embryo = simulate_embryo(seed)
    found, truth_volumes, spacing = segment_recording(seed, start, times, cache)
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

    def parent_of(label: int) -> int:
        return int(embryo.cells.parent[label - 1]) + 1

    divisions = division_measures(tracking.tracks, volumes, truth_volumes, parent_of)
    return naming.names, truth, seconds, divisions


def identities(volumes: list, truth_volumes: list) -> dict[tuple[int, int], int]:
    """(time, found label) -> the true label (cell id + 1) it overlaps most there."""
    found_ids = {}
    for t, (found, true) in enumerate(zip(volumes, truth_volumes, strict=True)):
        both = (found > 0) & (true > 0)
        width = int(true.max()) + 1
        codes = found[both].astype(np.int64) * width + true[both].astype(np.int64)
        pairs, counts = np.unique(codes, return_counts=True)
        for pair in pairs[np.argsort(counts, kind="stable")]:  # the largest overlap last wins
            found_ids[(t, int(pair // width))] = int(pair % width)
    return found_ids


@dataclass
class Divisions:
    """The tracker's divisions against the truth: true ones (mother and both daughters seen),
    found ones, found ones right (daughters are a true mother's two daughters), found ones that
    cut one nucleus in two (both daughters the same true cell, or the mother's), the true ones
    found, and the found time minus the true one for each right division."""

    true: int = 0
    found: int = 0
    right: int = 0
    cut: int = 0
    recalled: int = 0
    shifts: list = field(default_factory=list)

    def add(self, other: Divisions) -> None:
        for name in ("true", "found", "right", "cut", "recalled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.shifts += other.shifts

    def row(self, start: int, times: int, recordings: int) -> str:
        shifts = np.abs(np.asarray(self.shifts, dtype=float))
        on_time = int((shifts == 0).sum())
        late = int((shifts >= 2).sum())
        return (
            f"| {start} | {times} | {recordings} | {self.true} | {self.found} "
            f"| {self.right / max(self.found, 1):.0%} | {self.recalled / max(self.true, 1):.0%} "
            f"| {self.cut} | {self.found - self.right - self.cut} "
            f"| {on_time} / {int((shifts == 1).sum())} / {late} |"
        )


DIVISIONS_HEADER = (
    "| start (cells) | time points | recordings | true divisions | found | precision | recall "
    "| found: one nucleus cut in two | other wrong | right ones off by 0 / 1 / 2+ time points |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


def division_measures(tracks, volumes: list, truth_volumes: list, parent_of) -> Divisions:
    """The found tracks' divisions against the true ones; `parent_of(label)`: the true label of
    a true cell's mother (0: none)."""
    found_ids = identities(volumes, truth_volumes)
    seen: dict[int, list[int]] = {}
    for t, true in enumerate(truth_volumes):
        for label in np.unique(true[true > 0]):
            seen.setdefault(int(label), []).append(t)
    daughters: dict[int, set[int]] = {}
    for label in seen:
        if parent_of(label) in seen:
            daughters.setdefault(parent_of(label), set()).add(label)
    true_divisions = {mother for mother, pair in daughters.items() if len(pair) == 2}
    children: dict[int, list] = {}
    for track in tracks:
        if track.parent:
            children.setdefault(track.parent, []).append(track)
    by_id = {track.track: track for track in tracks}
    measured = Divisions(true=len(true_divisions))
    for parent, kids in children.items():
        measured.found += 1
        mother = by_id[parent]
        # A daughter is the true cell she overlaps most over her life (a division cut early
        # still counts, with its shift).
        kid_ids = []
        for kid in kids:
            labels = [found_ids.get((t, kid.track)) for t in range(kid.begin, kid.end + 1)]
            labels = [label for label in labels if label]
            kid_ids.append(max(set(labels), key=labels.count) if labels else 0)
        mother_id = found_ids.get((mother.end, mother.track), 0)
        common = {parent_of(label) for label in kid_ids}
        if len(kid_ids) == 2 and kid_ids[0] != kid_ids[1] and len(common) == 1:
            true_mother = common.pop()
            if true_mother in true_divisions:
                measured.right += 1
                measured.recalled += 1
                true_divisions.discard(true_mother)
                measured.shifts.append(mother.end - max(seen[true_mother]))
                continue
        if len(set(kid_ids)) == 1 or mother_id in kid_ids:
            measured.cut += 1
    return measured


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
    parser.add_argument("--cache", type=Path, help="keep the model's segmentations here (--model)")
    args = parser.parse_args()
    rows = []
    print(HEADER)
    for start in (int(part) for part in args.starts.split(",")):
        for times in (int(part) for part in args.times.split(",")):
            tally, divisions = Tally(), Divisions()
            for seed in seed_range(args.seeds):
                if args.model:
                    *named, found = model_run(seed, start, times, args.cache)
                    divisions.add(found)
                else:
                    named = truth_run(seed, start, times)
                tally.add(*named)
            print(tally.row(start, times), flush=True)
            rows.append(divisions.row(start, times, tally.recordings))
    if args.model:
        print(f"\nThe tracker's divisions\n\n{DIVISIONS_HEADER}")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
