"""What earlier pipeline steps recorded, gathered for the model card."""

from __future__ import annotations

import json
from pathlib import Path

from devolearn_web.catalogue import entry
from devolearn_web.training.augment import ASPECT_RANGE, ZOOM_RANGE
from devolearn_web.training.ceiling import recorded_ceiling
from devolearn_web.training.checkpoints import load_checkpoint
from devolearn_web.training.evaluate import card_metrics
from devolearn_web.training.hyperparameters import read_best_params
from devolearn_web.training.index import split_seeds, split_sizes
from devolearn_web.training.layout import SPLITS, Workspace
from devolearn_web.training.simulate import PROJECTION_ONLY_SEED_BASE, read_simulation_record
from devolearn_web.training.specs import get_spec

_WHAT_IS_SIMULATED = {
    "nucleus": "GFP-histone nucleus z-slices (Fluo-N3DH-CE-like) and whole-embryo projections",
    "membrane": "membrane z-slices (3DMMS-like) with cell-interior labels",
    "lineage": "whole-embryo projections with the true population of each founder lineage",
}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _seed_span(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))


def _split_summary(split: str, seeds: list[int], images: int) -> str:
    embryos = f"{len(seeds)} embryo" + ("" if len(seeds) == 1 else "s")
    label = "seed" if len(seeds) == 1 else "seeds"
    return f"{split}: {embryos} ({label} {_seed_span(seeds)}), {images} images"


def training_data_record(workspace: Workspace) -> dict:
    """Seeds, image counts and a plain statement of what the model was trained on."""
    sizes = split_sizes(workspace.index_csv)
    seeds = split_seeds(workspace.index_csv)
    sources = _read_json(workspace.sources_record) or {"simulated": False, "sources": {}}
    plan = read_simulation_record(workspace)
    images = {split: sizes.get(split, 0) for split in SPLITS}
    if sources["simulated"] and plan is not None:
        per_seed = "frames" if entry(workspace.model).task == "lineage" else "time points"
        splits = "; ".join(
            _split_summary(split, plan["seeds"][split], images[split]) for split in SPLITS
        )
        extra = plan.get("projection_seeds", 0)
        projection_only = (
            f" The train images also hold {extra} embryos (seeds {PROJECTION_ONLY_SEED_BASE}-"
            f"{PROJECTION_ONLY_SEED_BASE + extra - 1}) seen only as whole-embryo projections, "
            "with up to twice the usual blur."
            if extra
            else ""
        )
        uneven = plan.get("uneven_nuclei", 0.0)
        uneven_images = "projections" if plan.get("uneven_projections_only") else "images"
        uneven_note = (
            f" In {uneven:.0%} of the train {uneven_images} each nucleus keeps its own "
            "brightness, its cell's factor between a tenth and 1; validation and test images are "
            "evenly bright."
            if uneven
            else ""
        )
        ends = sources.get("train_empty_ends", 0)
        ends_note = (
            f" The train stacks also keep up to {ends} empty slices past each end (glow and "
            "noise, no nucleus), labelled empty."
            if ends
            else ""
        )
        caps_note = (
            " In every split a nucleus is labelled also in the slice next to those that cut it, "
            "where that slice shows its out-of-focus light above the background."
            if plan.get("visible_caps")
            else ""
        )
        description = (
            f"SIMULATED data only: {_WHAT_IS_SIMULATED[workspace.model]} rendered by "
            f"devolearn_web.training.simulator, {plan['timepoints']} {per_seed} per embryo. "
            f"{splits[0].upper()}{splits[1:]}.{projection_only}{uneven_note}{ends_note}"
            f"{caps_note} No real microscopy image was used for training, tuning or testing."
        )
        record = {
            "simulated": True,
            "description": description,
            "train_seeds": plan["seeds"]["train"],
            "validation_seeds": plan["seeds"]["validation"],
            "test_seeds": plan["seeds"]["test"],
            "images": images,
        }
        if plan.get("visible_caps"):
            record["visible_caps"] = True  # benches judge the model by the labels it learned
        return record
    folders = ", ".join(f"{split}: {path}" for split, path in sources["sources"].items())
    return {
        "simulated": False,
        "description": f"Dataset folders given to preprocess ({folders}).",
        "train_seeds": seeds.get("train", []),
        "validation_seeds": seeds.get("validation", []),
        "test_seeds": seeds.get("test", []),
        "images": images,
    }


def hyperparameter_record(workspace: Workspace) -> dict:
    """Learning rate, batch size, how long it trained and how they were chosen."""
    saved = load_checkpoint(workspace.checkpoint)
    state, chosen = saved["state"], saved["hyperparameters"]
    tuned = read_best_params(workspace.best_params)
    history = state["history"]
    record = {
        "learning_rate": chosen["learning_rate"],
        "batch_size": chosen["batch_size"],
        "chosen_by": chosen["source"],
        "epochs": history[-1]["epoch"] if history else 0,
        "steps": state["step"],
        "training_minutes": round(state["elapsed_seconds"] / 60.0, 1),
        "bfloat16_autocast": chosen["bf16"],
        "augmentation": chosen["augment"],
        "optimizer": "Adam",
        "best_epoch": state["best_epoch"],
        "optuna_trials": tuned["trials"] if tuned else 0,
    }
    if "trained_on" in chosen:  # checkpoints written before the key have none
        record["trained_on"] = chosen["trained_on"]
    if chosen.get("gap_weight"):
        record["gap_weight"] = chosen["gap_weight"]
    if chosen.get("small_object_weight"):
        record["small_object_weight"] = chosen["small_object_weight"]
    for key in ("freeze_batch_norm", "resolution_augmentation"):
        if chosen.get(key):
            record[key] = True
    if not chosen.get("object_dimming", True):
        record["object_dimming"] = False
    if chosen.get("projection_repeats", 1) != 1:
        record["projection_repeats"] = chosen["projection_repeats"]
    if chosen.get("tight_crops"):
        record["tight_crops"] = chosen["tight_crops"]
    if get_spec(workspace.model).is_segmentation:
        for key, default in (("zoom_range", ZOOM_RANGE), ("aspect_range", ASPECT_RANGE)):
            if chosen.get(key, default) != default:
                record[key] = chosen[key]
    if "init_from" in chosen:
        record["initial_weights"] = chosen["init_from"]
    if tuned:
        record["optuna"] = {
            key: tuned[key]
            for key in ("metric", "value", "data_fraction", "trial_epochs", "trial_images")
        }
    return record


def metrics_record(workspace: Workspace, sha256: str) -> dict:
    """metrics.json when it measured this very file (same sha256), else an empty record."""
    metrics = _read_json(workspace.metrics_json)
    if metrics is None or metrics.get("sha256") != sha256:
        return {}
    record = card_metrics(metrics)
    ceiling = recorded_ceiling(workspace)  # about the test labels, not the file: any model's
    if ceiling is not None:
        record["ceiling"] = ceiling
    return record


def export_record(workspace: Workspace, sha256: str) -> dict | None:
    """export.json when it describes this very file."""
    record = _read_json(workspace.export_record)
    if record is None or record.get("sha256") != sha256:
        return None
    return {key: value for key, value in record.items() if key != "sha256"}
