"""Per-founder counts from the tracked tree beside the lineage model's estimates, against the
simulator's true populations, on one rendered recording through the shipped models.

    PYTHONPATH=. python -m bench.founder_counts --seed 2000 --start 4 --times 40 [--cache D]
    PYTHONPATH=. python -m bench.founder_counts --truth --seed 2000 --start 4 --times 100

The nucleus model's segmentations are those of bench.founders (kept in --cache); the recording
is rendered again (the same seed draws the same images) for the lineage model, which sees each
time point's z-stack projected (the brightest value through z), as the app shows it.
With --truth the tree is the simulator's own tracks (named by the app's naming), so the
comparison is of the lineage model alone, over recordings too long to segment here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from devolearn_web.catalogue import LINEAGE_ORDER


def main() -> None:
    from bench.founders import segment_recording
    from bench.tracking import TWELVE_BITS
    from devolearn_web.founder_counts import model_estimates, tree_counts
    from devolearn_web.founders import name_founders
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.stack_assembly import _centres
    from devolearn_web.stacks import FrameStack
    from devolearn_web.tracking import track_nuclei
    from devolearn_web.training.simulator.ctc_recording import truth_tracking, write_ctc_recording
    from devolearn_web.training.simulator.embryo import simulate_embryo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--start", type=int, default=4)
    parser.add_argument("--times", type=int, default=40)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--truth", action="store_true", help="the simulator's tracks as the tree")
    args = parser.parse_args()
    embryo = simulate_embryo(args.seed)
    if args.truth:
        tracks, positions, _ = truth_tracking(
            embryo, args.start, args.times, np.random.default_rng(args.seed)
        )
    else:
        found, _, spacing = segment_recording(args.seed, args.start, args.times, args.cache)
        tracking = track_nuclei(found, spacing)
        volumes = [tracking.relabel(t, v) for t, v in enumerate(found)]
        tracks, positions = tracking.tracks, [_centres(v, spacing) for v in volumes]
    naming = name_founders(tracks, positions)
    tree, unknown = tree_counts(tracks, naming.names, args.times)
    registry = ModelRegistry(Path(__file__).resolve().parents[1] / "models")
    model = []
    with tempfile.TemporaryDirectory() as scratch:
        recording = write_ctc_recording(
            Path(scratch), args.seed, args.start, args.times, embryo=embryo
        )
        for t in range(args.times):
            stack = tifffile.imread(Path(scratch) / "01" / f"t{t:03d}.tif")
            positions = tuple({"z": z} for z in range(stack.shape[0]))
            frames = FrameStack("stack", stack, positions, {"slider": ["z"]}, scale=TWELVE_BITS)
            estimate, note = model_estimates(registry, frames)
            model.append(estimate[0])
            if note:
                print(note)
    truth = [embryo.populations_at(recording.start_minutes + t) for t in range(args.times)]
    print(f"names: {sorted(set(naming.names.values()))}; unknown in the tree: {unknown}")
    print(f"note: {naming.note}\n")
    print("| t | " + " | ".join(f"{k} true/tree/model" for k in LINEAGE_ORDER) + " |")
    print("|---" * (len(LINEAGE_ORDER) + 1) + "|")
    for t in range(args.times):
        cells = [
            f"{truth[t][k]}/{_shown(tree[t][k])}/{_shown((model[t] or {}).get(k))}"
            for k in LINEAGE_ORDER
        ]
        print(f"| {t + 1} | " + " | ".join(cells) + " |")
    print(
        "\n| lineage | time points with a tree count | tree = truth | model = truth "
        "| model - truth mean (all) | model - tree mean (where counted) |"
    )
    print("|---|---|---|---|---|---|")
    for k in LINEAGE_ORDER:
        counted = [t for t in range(args.times) if tree[t][k] is not None]
        estimated = [t for t in range(args.times) if model[t] is not None]
        tree_right = sum(tree[t][k] == truth[t][k] for t in counted)
        model_right = sum(model[t][k] == truth[t][k] for t in estimated)
        error = np.mean([model[t][k] - truth[t][k] for t in estimated]) if estimated else np.nan
        both = [t for t in counted if model[t] is not None]
        bias = np.mean([model[t][k] - tree[t][k] for t in both]) if both else np.nan
        print(
            f"| {k} | {len(counted)} | {tree_right}/{len(counted)} "
            f"| {model_right}/{len(estimated)} "
            f"| {error:+.2f} | {bias:+.2f} |"
        )


def _shown(value) -> str:
    return "–" if value is None else str(value)


if __name__ == "__main__":
    main()
