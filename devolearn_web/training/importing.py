"""Bring in weights trained elsewhere: a state_dict, or an original devolearn-web ONNX file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from devolearn_web.catalogue import RANGE_LINEAGE, TRAINING_RANGE, entry
from devolearn_web.file_digest import file_sha256
from devolearn_web.training.cards import CARD_VERSION, build_card, write_card
from devolearn_web.training.command_records import reproduce_command
from devolearn_web.training.export import export_network
from devolearn_web.training.layout import Workspace
from devolearn_web.training.models import build_model, input_shape
from devolearn_web.training.onnx_runner import OnnxModel, onnx_opset
from devolearn_web.training.run_records import metrics_record
from devolearn_web.training.specs import MODEL_SIDE, get_spec

ORIGINAL_DATA = {
    "nucleus": "the Cell Tracking Challenge dataset Fluo-N3DH-CE (real GFP-histone z-slices)",
    "membrane": "3DMMS (real membrane z-slices of C. elegans embryos)",
    "lineage": "EPIC (real time-lapse frames with per-lineage cell counts)",
}
_BARE_ARCHITECTURE = {
    "nucleus": "segmentation_models_pytorch FPN, encoder resnet18, in_channels=1, classes=1",
    "membrane": "segmentation_models_pytorch FPN, encoder resnet18, in_channels=1, classes=1",
    "lineage": "torchvision resnet18, fc = Linear(512, 7)",
}


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .pt/.pth file: bare, under "state_dict", or saved from DataParallel."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _imported_training_data(model: str, source: Path) -> dict:
    return {
        "simulated": False,
        "description": (
            f"Weights imported from {source.name}, trained outside this project by DevoLearn "
            f"on {ORIGINAL_DATA[model]}; this project neither trained nor re-tested them "
            "unless metrics say otherwise."
        ),
    }


def _imported_limitations(model: str) -> list[str]:
    return [
        "Imported weights: how they were trained, and on which images, is only known from "
        "their authors; this project did not reproduce them.",
        "Every input is squashed to 256x256 whatever its aspect ratio, as in the original.",
    ] + (
        [
            f"Trained up to the stage where lineage {RANGE_LINEAGE} has "
            f"{TRAINING_RANGE[RANGE_LINEAGE]} cells; later "
            "stages are extrapolation."
        ]
        if entry(model).task == "lineage"
        else []
    )


def import_state_dict(
    workspace: Workspace,
    path: Path,
    append_sigmoid: bool | None = None,
    version: str = CARD_VERSION,
) -> dict:
    """Export a state_dict of the same architecture to models/<name>.onnx and write its card."""
    # By default segmentation networks get a final sigmoid (their logits become probabilities)
    # and the lineage network does not: DevoLearn trained it to output scaled counts directly.
    spec = get_spec(workspace.model)
    append_sigmoid = spec.is_segmentation if append_sigmoid is None else append_sigmoid
    network = build_model(workspace.model)
    network.load_state_dict(load_state_dict_file(path))
    shape = input_shape(workspace.model, MODEL_SIDE, batch=2)
    inputs = np.random.default_rng(0).random(shape).astype(np.float32)
    if spec.normalisation == "symmetric":
        inputs = inputs * 2.0 - 1.0
    report = export_network(
        network, workspace.model, workspace.onnx_path, inputs, append_sigmoid=append_sigmoid
    )
    sha256 = file_sha256(workspace.onnx_path)
    architecture = _BARE_ARCHITECTURE[workspace.model] + (", sigmoid" if append_sigmoid else "")
    card = build_card(
        spec,
        sha256=sha256,
        opset=onnx_opset(workspace.onnx_path),
        activation="none",  # probabilities (sigmoid appended) or raw scaled counts
        training_data=_imported_training_data(workspace.model, path),
        metrics=metrics_record(workspace, sha256),
        hyperparameters={},
        reproduce=reproduce_command(workspace),
        limitations=_imported_limitations(workspace.model),
        version=version,
        export={"source": path.name, **report.to_dict()},
        architecture=architecture,
    )
    write_card(card, workspace.card_path)
    return card


def import_original_onnx(workspace: Workspace, path: Path, version: str = CARD_VERSION) -> dict:
    """Copy an original devolearn-web ONNX file (raw outputs) to models/ and write its card."""
    # Its segmentation outputs are logits, so the card says the app must apply the sigmoid; its
    # lineage outputs are scaled counts, read as they are.
    spec = get_spec(workspace.model)
    probe = OnnxModel(path)  # checks the input and output names
    shape = input_shape(workspace.model, MODEL_SIDE)
    output = probe.run(np.zeros(shape, dtype=np.float32))
    expected = (1, 1, MODEL_SIDE, MODEL_SIDE) if spec.is_segmentation else (1, 7)
    if output.shape != expected:
        raise ValueError(f"{path}: output shape {output.shape}, expected {expected}")
    workspace.onnx_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, workspace.onnx_path)
    sha256 = file_sha256(workspace.onnx_path)
    card = build_card(
        spec,
        sha256=sha256,
        opset=onnx_opset(workspace.onnx_path),
        activation="sigmoid" if spec.is_segmentation else "none",
        training_data=_imported_training_data(workspace.model, path),
        metrics=metrics_record(workspace, sha256),
        hyperparameters={},
        reproduce=reproduce_command(workspace),
        limitations=_imported_limitations(workspace.model),
        version=version,
        architecture=_BARE_ARCHITECTURE[workspace.model],
    )
    write_card(card, workspace.card_path)
    return card
