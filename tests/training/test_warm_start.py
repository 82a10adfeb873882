"""Starting training from an ONNX file: folded batch norms rebuilt, same outputs as the file."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported_lineage(tmp_path_factory):
    """A lineage network with settled batch-norm statistics, and its float32 ONNX file."""
    from devolearn_web.training.export import export_network
    from devolearn_web.training.models import build_model

    torch.manual_seed(0)
    network = build_model("lineage")
    with torch.no_grad():
        for _ in range(3):
            network(torch.rand(4, 3, 64, 64) * 2 - 1)
    network.eval()
    path = tmp_path_factory.mktemp("warm") / "lineage.onnx"
    inputs = np.random.default_rng(1).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    export_network(network, "lineage", path, inputs, side=64, float16_storage=False)
    return network, path


def test_every_batch_norm_of_a_resnet_follows_its_convolution() -> None:
    from devolearn_web.training.models import build_model
    from devolearn_web.training.warm_start import folded_pairs

    pairs = folded_pairs(build_model("lineage"))
    assert len(pairs) == 20  # ResNet-18: 17 convolutions in the blocks and stem, 3 downsamples
    assert ("conv1", "bn1") in pairs and ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs


def test_network_started_from_the_file_computes_what_the_file_computes(exported_lineage) -> None:
    from devolearn_web.training.models import build_model
    from devolearn_web.training.onnx_runner import OnnxModel
    from devolearn_web.training.warm_start import load_onnx_weights

    original, path = exported_lineage
    images = torch.rand(24, 3, 64, 64) * 2 - 1
    started = build_model("lineage")
    load_onnx_weights(started, path, images)
    started.eval()
    probe = np.random.default_rng(2).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ours = torch.sigmoid(started(torch.from_numpy(probe))).numpy()
    np.testing.assert_allclose(ours, OnnxModel(path, threads=1).run(probe), atol=1e-5)
    # The batch norms hold the statistics of their inputs again, not the folded identity.
    assert not torch.allclose(started.bn1.running_var, torch.ones_like(started.bn1.running_var))
    # In training mode batch statistics replace them, and the answer stays close.
    started.train()
    with torch.no_grad():
        batch = torch.sigmoid(started(images[:16])).numpy()
        reference = OnnxModel(path, threads=1).run(images[:16].numpy())
    assert np.abs(batch - reference).mean() < 0.05


def test_a_file_of_another_architecture_is_refused(exported_lineage, tmp_path) -> None:
    from devolearn_web.training.warm_start import load_onnx_weights

    _, path = exported_lineage
    with pytest.raises((ValueError, KeyError, RuntimeError)):
        from devolearn_web.training.models import build_model

        load_onnx_weights(build_model("nucleus"), path, torch.rand(2, 1, 64, 64))


def test_a_new_run_starts_from_the_file_and_a_resumed_one_from_its_checkpoint(
    exported_lineage, workspace_factory
) -> None:
    from devolearn_web.file_digest import file_sha256
    from devolearn_web.training.checkpoints import load_checkpoint
    from devolearn_web.training.onnx_runner import OnnxModel
    from devolearn_web.training.quantize import network_inputs
    from devolearn_web.training.train import TrainingRun, TrainSettings

    _, path = exported_lineage
    workspace = workspace_factory("lineage")
    options = dict(max_steps=1, batch_size=2, learning_rate=1e-3, bf16=False, threads=1)
    run = TrainingRun(workspace, TrainSettings(init_from=path, **options))
    probe = network_inputs("lineage", workspace.index_csv, "validation", 2)
    run.network.eval()
    with torch.no_grad():
        ours = torch.sigmoid(run.network(torch.from_numpy(probe))).numpy()
    np.testing.assert_allclose(ours, OnnxModel(path, threads=1).run(probe), atol=1e-5)
    run.run()
    saved = load_checkpoint(workspace.checkpoint)
    trained = saved["state_dict"]["fc.weight"]
    # The run remembers which file it started from, even once export has replaced it.
    assert saved["hyperparameters"]["init_from"] == {"file": str(path), "sha256": file_sha256(path)}
    # Resuming loads the checkpoint; the file is not read again over the trained weights.
    resumed = TrainingRun(workspace, TrainSettings(init_from=path, **options))
    assert torch.equal(resumed.network.state_dict()["fc.weight"], trained)
    assert resumed.record["init_from"] == saved["hyperparameters"]["init_from"]


def test_export_blends_the_fine_tune_only_with_the_file_it_started_from(
    exported_lineage, workspace_factory
) -> None:
    from devolearn_web.file_digest import file_sha256
    from devolearn_web.training.onnx_runner import OnnxModel
    from devolearn_web.training.quantize import network_inputs
    from devolearn_web.training.shipping import export_trained_model
    from devolearn_web.training.train import TrainingRun, TrainSettings

    _, start = exported_lineage
    workspace = workspace_factory("lineage")
    options = dict(max_steps=2, batch_size=2, learning_rate=1e-2, bf16=False, threads=1)
    TrainingRun(workspace, TrainSettings(init_from=start, **options)).run()
    probe = network_inputs("lineage", workspace.index_csv, "validation", 2)

    def outputs(path):
        return OnnxModel(path, threads=1).run(probe)

    export_trained_model(workspace, float16_storage=False)
    fine_tune = outputs(workspace.onnx_path)
    assert np.abs(fine_tune - outputs(start)).max() > 1e-4  # the two steps moved it
    shipped = file_sha256(workspace.onnx_path)
    with pytest.raises(ValueError, match="not the file this run started from"):
        export_trained_model(
            workspace, float16_storage=False, blend_with=workspace.onnx_path, blend_weight=0.5
        )
    assert file_sha256(workspace.onnx_path) == shipped

    record = export_trained_model(
        workspace, float16_storage=False, blend_with=start, blend_weight=0.0
    )
    np.testing.assert_allclose(outputs(workspace.onnx_path), outputs(start), atol=1e-6)
    np.testing.assert_allclose(outputs(workspace.unblended_onnx), fine_tune, atol=1e-6)
    assert record["blend"]["weight"] == 0.0
    assert record["blend"]["with_sha256"] == file_sha256(start)
    assert record["sha256"] == file_sha256(workspace.onnx_path)
    export_trained_model(workspace, float16_storage=False, blend_with=start, blend_weight=1.0)
    np.testing.assert_allclose(outputs(workspace.onnx_path), fine_tune, atol=1e-6)
