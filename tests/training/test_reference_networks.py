"""`train --network` trains a reference network; `score-checkpoint` scores any checkpoint."""

from __future__ import annotations

import json

import pytest
from tiny_training import tiny_settings

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")


def test_the_cli_offers_exactly_the_networks_models_can_build():
    from devolearn_web.training.models import REFERENCE_NETWORKS
    from devolearn_web.training.specs import REFERENCE_NETWORK_NAMES

    assert set(REFERENCE_NETWORK_NAMES) == set(REFERENCE_NETWORKS)


def test_reference_networks_are_for_segmentation_only():
    from devolearn_web.training.models import build_network

    with pytest.raises(ValueError, match="segmentation"):
        build_network("lineage", "unet-resnet34")
    with pytest.raises(ValueError, match="unknown network"):
        build_network("nucleus", "unet-resnet999")


def test_a_unet_trains_records_its_network_and_is_scored(workspace_factory):
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.index import read_index
    from devolearn_web.training.score_checkpoint import score_checkpoint
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings(network="unet-resnet34"))
    saved = load_checkpoint(workspace.best_checkpoint)
    assert saved["hyperparameters"]["network"] == "unet-resnet34"
    # A U-Net decoder, not the FPN's: the checkpoint holds the network asked for.
    assert any(key.startswith("decoder.blocks.") for key in saved["state_dict"])
    assert not any(key.startswith("decoder.p5") for key in saved["state_dict"])

    record = score_checkpoint(workspace, None, threshold=0.4)
    assert record["network"] == "unet-resnet34"
    assert record["threshold"] == 0.4 and record["steps"] == 2
    assert record["test"]["images"] == len(read_index(workspace.index_csv, "test"))
    assert 0.0 <= record["test"]["iou"] <= 1.0
    written = workspace.run_dir / "checkpoint_scores_best_0.4.json"
    assert json.loads(written.read_text())["test"] == record["test"]


def test_resuming_with_another_network_is_refused(workspace_factory):
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings())
    with pytest.raises(ValueError, match="network None -> unet-resnet34"):
        train(workspace, tiny_settings(network="unet-resnet34", max_steps=4))


def test_scores_of_a_checkpoint_equal_those_of_its_exported_onnx_file(workspace_factory):
    from devolearn_web.training.evaluate import evaluate_segmentation
    from devolearn_web.training.onnx_runner import OnnxModel
    from devolearn_web.training.score_checkpoint import score_checkpoint
    from devolearn_web.training.shipping import export_trained_model
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings(max_steps=4))
    export_trained_model(workspace, float16_storage=False)
    from_onnx = evaluate_segmentation(
        "nucleus", OnnxModel(workspace.onnx_path), workspace.index_csv, 0.5
    )
    from_checkpoint = score_checkpoint(workspace, None, threshold=0.5)["test"]
    assert from_checkpoint["images"] == from_onnx["images"]
    for key in ("iou", "dice", "seg", "count_error_percent"):
        assert from_checkpoint[key] == pytest.approx(from_onnx[key], abs=2e-3), key


def test_score_checkpoint_from_the_command_line(workspace_factory, capsys):
    from devolearn_web.training.cli import main
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings())
    roots = ["--data-root", str(workspace.data_root), "--runs-root", str(workspace.runs_root)]
    roots += ["--models-dir", str(workspace.models_dir)]
    assert main(["score-checkpoint", "--model", "nucleus", *roots, "--threshold", "0.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["network"] == "the model's own" and printed["threshold"] == 0.5
    assert main(["score-checkpoint", "--model", "lineage", *roots]) == 1


def test_export_refuses_a_reference_network(workspace_factory):
    from devolearn_web.training.shipping import export_trained_model
    from devolearn_web.training.train import train

    workspace = workspace_factory("nucleus")
    train(workspace, tiny_settings(network="unet-resnet34"))
    with pytest.raises(ValueError, match="reference network unet-resnet34"):
        export_trained_model(workspace)
    assert not workspace.onnx_path.exists()
