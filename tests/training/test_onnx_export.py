"""ONNX export: sigmoid at the end, dynamic batch, float16 storage, parity with PyTorch; import."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def settled(network):
    """A random network whose batch-norm statistics have seen data, like a trained one."""
    torch.manual_seed(0)
    network.train()
    channels = network.conv1.in_channels if hasattr(network, "conv1") else 1
    with torch.no_grad():
        for _ in range(3):
            network(torch.rand(4, channels, 64, 64))
    return network.eval()


@pytest.fixture(scope="module")
def fpn():
    from devolearn_web.training.models import build_model

    return settled(build_model("nucleus"))


@pytest.fixture(scope="module")
def exported(fpn, tmp_path_factory):
    """The tiny-input FPN exported twice: float16 storage (shipped) and float32."""
    from devolearn_web.training.export import export_network

    folder = tmp_path_factory.mktemp("export")
    inputs = np.random.default_rng(0).random((3, 1, 64, 64)).astype(np.float32)
    half = export_network(fpn, "nucleus", folder / "half.onnx", inputs, side=64)
    full = export_network(
        fpn, "nucleus", folder / "full.onnx", inputs, side=64, float16_storage=False
    )
    return folder, inputs, half, full


def test_fpn_export_matches_pytorch(exported):
    _, _, half, full = exported
    assert half.parity_max_abs_difference <= 1e-3
    assert full.parity_max_abs_difference <= 1e-5
    assert full.shipped_vs_trained_max_abs_difference <= 1e-5  # folding alone costs nothing
    # Rounding the weights to float16 moves probabilities very little on average.
    assert half.shipped_vs_trained_mean_abs_difference < 1e-3


def test_float16_storage_halves_the_file(exported):
    _, _, half, full = exported
    assert 0.45 < half.size_bytes / full.size_bytes < 0.55


def test_graph_reads_input_ends_in_sigmoid_and_computes_in_float32(exported):
    folder, _, _, _ = exported
    model = onnx.load(str(folder / "half.onnx"))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert model.graph.node[-1].op_type == "Sigmoid"
    assert model.graph.node[-1].output == ["output"]
    assert model.opset_import[0].version == 17
    halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert halves and len(casts) == len(halves)
    assert all(n.attribute[0].i == onnx.TensorProto.FLOAT for n in casts)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_batch_axis_is_dynamic(exported):
    from devolearn_web.training.export import onnx_probabilities

    folder, inputs, _, _ = exported
    together = onnx_probabilities(folder / "half.onnx", inputs)
    alone = onnx_probabilities(folder / "half.onnx", inputs[1:2])
    assert together.shape == (3, 1, 64, 64)
    assert np.allclose(together[1:2], alone, atol=1e-5)
    assert 0.0 <= together.min() and together.max() <= 1.0


def test_folding_batch_norms_keeps_outputs(fpn):
    from devolearn_web.training.export import fold_batch_norms

    x = torch.rand(2, 1, 64, 64)
    folded = fold_batch_norms(fpn)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), fpn(x), atol=1e-4)


def test_lineage_export_matches_pytorch(tmp_path):
    from devolearn_web.training.export import export_network
    from devolearn_web.training.models import build_model

    network = settled(build_model("lineage"))
    inputs = np.random.default_rng(1).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    report = export_network(network, "lineage", tmp_path / "lineage.onnx", inputs, side=64)
    assert report.parity_max_abs_difference <= 1e-3
    assert onnx.load(str(tmp_path / "lineage.onnx")).graph.node[-1].op_type == "Sigmoid"


def test_unfaithful_export_is_refused_and_leaves_no_file(fpn, tmp_path):
    from devolearn_web.training.export import export_network

    inputs = np.random.default_rng(0).random((1, 1, 64, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="differ"):
        export_network(fpn, "nucleus", tmp_path / "x.onnx", inputs, side=64, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_import_state_dict_writes_onnx_and_card(workspace_factory, tmp_path):
    from devolearn_web.file_digest import file_sha256
    from devolearn_web.training.cards import validate_card
    from devolearn_web.training.importing import import_state_dict
    from devolearn_web.training.models import build_model

    workspace = workspace_factory("lineage", preprocess_size=None)
    state_path = tmp_path / "lineage_weights.pt"
    # As DevoLearn shipped it: a bare state_dict, here saved from DataParallel ("module.").
    weights = settled(build_model("lineage")).state_dict()
    torch.save({f"module.{key}": value for key, value in weights.items()}, state_path)
    card = import_state_dict(workspace, state_path)
    assert validate_card(card) == []
    assert card["sha256"] == file_sha256(workspace.onnx_path)
    assert card["output"]["activation"] == "none"
    assert card["training_data"]["simulated"] is False
    # The lineage head keeps DevoLearn's raw outputs: no sigmoid is appended.
    assert onnx.load(str(workspace.onnx_path)).graph.node[-1].op_type != "Sigmoid"


def test_import_original_onnx_declares_the_sigmoid_for_the_app(workspace_factory, fpn):
    from devolearn_web.training.export import export_to_onnx
    from devolearn_web.training.importing import import_original_onnx

    workspace = workspace_factory("membrane", preprocess_size=None)
    original = workspace.run_dir / "original_membrane.onnx"
    # Like the devolearn-web files: opset 11, raw logits, input "input", output "output".
    export_to_onnx(fpn, original, torch.zeros(1, 1, 256, 256), opset=11)
    card = import_original_onnx(workspace, original)
    assert card["output"]["activation"] == "sigmoid"
    assert card["opset"] == 11
    assert card["input"]["normalisation"] == "unit"
    assert workspace.onnx_path.read_bytes() == original.read_bytes()


def one_weight_model(weight: np.ndarray, shape: np.ndarray):
    """A tiny graph with a float weight and an integer shape constant."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weight"], ["product"]),
            helper.make_node("Reshape", ["product", "shape"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(shape, "shape")],
    )
    return helper.make_model(graph)


def test_a_blend_moves_each_float_weight_part_of_the_way_and_keeps_the_rest():
    from onnx import numpy_helper

    from devolearn_web.training.export import blend_weights

    shape = np.array([2], dtype=np.int64)
    start = one_weight_model(np.array([[0, 4], [8, 16]], dtype=np.float16), shape)
    tuned = one_weight_model(np.array([[4, 4], [0, 32]], dtype=np.float16), shape)
    blended = {
        item.name: numpy_helper.to_array(item)
        for item in blend_weights(start, tuned, 0.25).graph.initializer
    }
    np.testing.assert_array_equal(blended["weight"], [[1, 4], [6, 20]])
    assert blended["weight"].dtype == np.float16
    np.testing.assert_array_equal(blended["shape"], shape)


def test_a_blend_of_two_different_networks_is_refused():
    from onnx import numpy_helper

    from devolearn_web.training.export import blend_weights

    shape = np.array([2], dtype=np.int64)
    start = one_weight_model(np.ones((2, 2), dtype=np.float32), shape)
    with pytest.raises(ValueError, match="not the same network"):
        blend_weights(start, one_weight_model(np.ones((2, 3), dtype=np.float32), shape), 0.5)
    larger = one_weight_model(np.ones((2, 2), dtype=np.float32), shape)
    larger.graph.initializer.append(numpy_helper.from_array(np.ones(3, np.float32), "extra"))
    with pytest.raises(ValueError, match="1 weights more"):
        blend_weights(larger, start, 0.5)
