"""Turn a trained run into what the app serves: models/<name>.onnx and its model card."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx

from devolearn_web.file_digest import file_sha256
from devolearn_web.training.cards import (
    CARD_VERSION,
    LIMITATIONS,
    build_card,
    carried_over_threshold,
    read_card,
    write_card,
)
from devolearn_web.training.checkpoints import load_checkpoint
from devolearn_web.training.command_records import reproduce_command
from devolearn_web.training.dataset import build_dataset
from devolearn_web.training.evaluate import recorded_calibration
from devolearn_web.training.export import blend_weights, export_network
from devolearn_web.training.layout import Workspace
from devolearn_web.training.models import build_model, input_shape
from devolearn_web.training.onnx_runner import onnx_opset
from devolearn_web.training.run_records import (
    export_record,
    hyperparameter_record,
    metrics_record,
    training_data_record,
)
from devolearn_web.training.specs import MODEL_SIDE, get_spec

PARITY_IMAGES = 8


def parity_inputs(workspace: Workspace, count: int = PARITY_IMAGES, seed: int = 0) -> np.ndarray:
    """Parity-check inputs (float32 N x C x H x W): validation images plus one of noise."""
    # Real-looking inputs exercise the network where it is used; the noise drives activations
    # where validation images may not.
    dataset = build_dataset(workspace.model, workspace.index_csv, "validation", limit=count)
    images = [dataset[i][0].numpy() for i in range(len(dataset))]
    shape = images[0].shape if images else input_shape(workspace.model, MODEL_SIDE)[1:]
    noise = np.random.default_rng(seed).random(shape)
    if get_spec(workspace.model).normalisation == "symmetric":
        noise = noise * 2.0 - 1.0
    return np.stack(images + [noise.astype(np.float32)])


def export_trained_model(
    workspace: Workspace,
    float16_storage: bool = True,
    blend_with: Path | None = None,
    blend_weight: float = 1.0,
) -> dict:
    """Export the best checkpoint to models/<name>.onnx; record how faithful it is.

    With `blend_with` (the file the run started from) the shipped weights are the blend
    export.blend_weights makes, `blend_weight` of the way from that file to the fine-tune."""
    if not workspace.best_checkpoint.exists():
        raise FileNotFoundError(f"{workspace.best_checkpoint} not found; run train first")
    saved = load_checkpoint(workspace.best_checkpoint)
    reference = saved.get("hyperparameters", {}).get("network")
    if reference:
        raise ValueError(
            f"{workspace.best_checkpoint} holds the reference network {reference}, which the app "
            "does not serve; measure it with score-checkpoint instead"
        )
    # Read first: the starting file may be the very file this export replaces.
    start = onnx.load(str(blend_with)) if blend_with else None
    start_sha256 = file_sha256(blend_with) if blend_with else None
    started_from = saved.get("hyperparameters", {}).get("init_from")
    if blend_with and (started_from or {}).get("sha256") != start_sha256:
        origin = started_from["file"] if started_from else "no file: it started from scratch"
        raise ValueError(
            f"{blend_with} is not the file this run started from ({origin}); "
            "a blend is only meaningful with that file"
        )
    network = build_model(workspace.model)
    network.load_state_dict(saved["state_dict"])
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    exported = workspace.unblended_onnx if start is not None else workspace.onnx_path
    report = export_network(
        network,
        workspace.model,
        exported,
        parity_inputs(workspace),
        float16_storage=float16_storage,
    )
    record = {
        "source": workspace.best_checkpoint.as_posix(),
        "weights_storage": "float16, cast to float32 at load" if float16_storage else "float32",
        **report.to_dict(),
    }
    if start is not None:
        blended = blend_weights(start, onnx.load(str(exported)), blend_weight)
        partial = workspace.onnx_path.with_name(workspace.onnx_path.name + ".partial")
        onnx.save(blended, str(partial))
        os.replace(partial, workspace.onnx_path)
        record["blend"] = {
            "with_sha256": start_sha256,
            "weight": blend_weight,
            "meaning": "weights = start + weight x (fine-tune - start); the parity figures "
            f"above are the fine-tune's own ({exported.as_posix()})",
        }
    record["sha256"] = file_sha256(workspace.onnx_path)
    workspace.export_record.write_text(json.dumps(record, indent=2) + "\n")
    return record


def write_trained_card(workspace: Workspace, version: str = CARD_VERSION) -> dict:
    """Write models/<name>.json for the exported file from the run's records."""
    spec = get_spec(workspace.model)
    if not workspace.onnx_path.exists():
        raise FileNotFoundError(f"{workspace.onnx_path} not found; run export first")
    sha256 = file_sha256(workspace.onnx_path)
    replaced = read_card(workspace.card_path)
    if workspace.run_training_plot.exists():
        shutil.copyfile(workspace.run_training_plot, workspace.training_plot)
    card = build_card(
        spec,
        sha256=sha256,
        opset=onnx_opset(workspace.onnx_path),
        activation="none",  # the file ends in a sigmoid
        training_data=training_data_record(workspace),
        metrics=metrics_record(workspace, sha256),
        hyperparameters=hyperparameter_record(workspace),
        reproduce=reproduce_command(workspace),
        limitations=LIMITATIONS[workspace.model],
        training_plot=workspace.training_plot.name if workspace.training_plot.exists() else None,
        version=version,
        export=export_record(workspace, sha256),
        calibration=recorded_calibration(workspace, sha256),
    )
    if spec.is_segmentation and "threshold" not in card["metrics"]:
        # Not measured yet (export): later steps measure at this threshold, so keep the one
        # chosen for the model it replaces rather than fall back to the global 0.5.
        card["output"].update(carried_over_threshold(replaced, sha256))
    write_card(card, workspace.card_path)
    return card
