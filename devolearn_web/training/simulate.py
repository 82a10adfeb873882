"""Write simulated train / validation / test datasets from disjoint seed ranges, and record them."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from devolearn_web.catalogue import entry
from devolearn_web.training.command_records import forget_preprocess_command
from devolearn_web.training.layout import SPLITS, Workspace

# Seed ranges never overlap, so a test embryo is never seen in training or tuning.
SEED_BASES = {"train": 0, "validation": 1000, "test": 2000}
# Nucleus training embryos seen only as projections: from 500, clear of the stack seeds.
PROJECTION_ONLY_SEED_BASE = 500


@dataclass(frozen=True)
class SimulationPlan:
    """What to simulate: seeds per split, time points (frames for lineage) per seed, shape."""

    model: str
    seeds: dict[str, list[int]]
    timepoints: int
    shape: list[int] | None = None  # None: the simulator's default, the real datasets' shape
    projections: bool = True  # nucleus only: also write whole-embryo projections
    projection_seeds: int = 0  # nucleus only: extra training embryos seen only as projections
    # Nucleus only: share of the training images whose nuclei vary up to tenfold in brightness;
    # validation and test stay even, so a model is chosen and judged on the usual images.
    uneven_nuclei: float = 0.0
    # Nucleus only: the uneven share applies to projections alone; stacks stay even.
    uneven_projections_only: bool = False
    # Nucleus only: label a nucleus's cap in the slice next to it where the slice shows it
    # (`render_nucleus.label_visible_caps`), in every split; off, the ellipsoid's cross-sections.
    visible_caps: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.uneven_nuclei <= 1.0:
            raise ValueError(f"uneven_nuclei is a share in [0, 1], got {self.uneven_nuclei}")
        if self.uneven_projections_only and not self.uneven_nuclei:
            raise ValueError("uneven projections only needs a share of uneven nuclei above 0")

    def to_record(self) -> dict:
        record = asdict(self)
        for option in (
            "projection_seeds",
            "uneven_nuclei",
            "uneven_projections_only",
            "visible_caps",
        ):
            if not record[option]:
                del record[option]  # records written before the option still match
        return record


def plan_seeds(train: int, validation: int, test: int) -> dict[str, list[int]]:
    """Disjoint seed lists per split: train from 0, validation from 1000, test from 2000."""
    counts = {"train": train, "validation": validation, "test": test}
    for split, count in counts.items():
        if count < 1:
            raise ValueError(f"the {split} split needs at least one seed, got {count}")
        if count > 1000:
            raise ValueError(f"at most 1000 seeds per split keep the ranges apart, got {count}")
    return {
        split: list(range(SEED_BASES[split], SEED_BASES[split] + counts[split])) for split in SPLITS
    }


def _writer(model: str):
    # Imported late: the simulator is a separate room and only `simulate` needs it.
    from devolearn_web.training import simulator

    return {
        "nucleus": simulator.write_nucleus_dataset,
        "membrane": simulator.write_membrane_dataset,
        "lineage": simulator.write_lineage_dataset,
    }[model]


def projection_only_seeds(plan: SimulationPlan, split: str) -> list[int]:
    """The nucleus training embryos rendered only as projections (none outside `train`)."""
    if split != "train" or not plan.projection_seeds:
        return []
    first = PROJECTION_ONLY_SEED_BASE
    extra = list(range(first, first + plan.projection_seeds))
    if set(extra) & set(plan.seeds["train"]) or extra[-1] >= SEED_BASES["validation"]:
        raise ValueError(
            f"projection-only seeds {extra[0]}..{extra[-1]} overlap other embryos; "
            "use fewer than 500 training seeds and 500 projection seeds"
        )
    return extra


def _write_split(plan: SimulationPlan, split: str, out_dir: Path, processes: int) -> None:
    writer = _writer(plan.model)
    seeds = plan.seeds[split]
    kwargs: dict = {"processes": processes}
    if plan.shape is not None:
        kwargs["shape"] = tuple(plan.shape)
    if entry(plan.model).task == "lineage":
        writer(out_dir, seeds, frames=plan.timepoints, **kwargs)
    elif plan.model == "nucleus":
        writer(
            out_dir,
            seeds,
            timepoints=plan.timepoints,
            projections=plan.projections,
            projection_only_seeds=projection_only_seeds(plan, split),
            uneven_share=plan.uneven_nuclei if split == "train" else 0.0,
            visible_caps=plan.visible_caps,
            uneven_stacks=not plan.uneven_projections_only,
            **kwargs,
        )
    else:
        writer(out_dir, seeds, timepoints=plan.timepoints, **kwargs)


def read_simulation_record(workspace: Workspace) -> dict | None:
    """The recorded plan of the simulated data, or None when the data was not simulated here."""
    if not workspace.simulation_record.exists():
        return None
    return json.loads(workspace.simulation_record.read_text())


def simulate(
    workspace: Workspace, plan: SimulationPlan, force: bool = False, processes: int = 1
) -> dict:
    """Write the three splits under data/<model>/simulated and record the plan; skip if done.

    `processes` renders embryos in parallel; it changes no file, so the plan does not hold it."""
    record = plan.to_record()
    existing = read_simulation_record(workspace)
    if existing is not None and not force:
        if existing == record:
            return existing
        raise ValueError(
            f"{workspace.simulation_record} records a different simulation; "
            "pass --force to delete the old data and simulate again"
        )
    if force:
        for folder in (workspace.data_dir / "simulated", workspace.processed_dir):
            if folder.exists():
                shutil.rmtree(folder)
        workspace.simulation_record.unlink(missing_ok=True)
        forget_preprocess_command(workspace)
    for split in SPLITS:
        out_dir = workspace.simulated_split_dir(split)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_split(plan, split, out_dir, processes)
    # Written last, so an interrupted simulation is redone rather than mistaken for complete.
    workspace.simulation_record.write_text(json.dumps(record, indent=2) + "\n")
    return record
