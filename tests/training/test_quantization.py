"""Int8 quantization: float16 storage undone, a QDQ file written, adopted only if accuracy holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from processed_samples import write_processed_samples

pytestmark = pytest.mark.training

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("torch")  # devolearn_web.training.dataset needs it

from devolearn_web.cpu_features import int8_sums_saturate  # noqa: E402
from devolearn_web.training.layout import Workspace  # noqa: E402
from devolearn_web.training.quantize import (  # noqa: E402
    Acceptance,
    float32_weights,
    quantize,
    quantize_file,
    verdict,
)

SIDE = 256
DISKS_PER_IMAGE = 4


def write_two_conv_model(path: Path) -> str:
    """A float32 Conv(3x3 mean, 4 maps) -> Relu -> Conv(1x1) -> Sigmoid net; its sha256.

    It finds bright blobs like the tiny test models, but has a hidden layer to quantize (the
    last convolution and the sigmoid stay float32 by design).
    """
    import hashlib

    from onnx import TensorProto, helper, numpy_helper

    weights = {
        "W1": np.full((4, 1, 3, 3), 1 / 9, dtype=np.float32),
        "B1": np.zeros(4, dtype=np.float32),
        "W2": np.full((1, 4, 1, 1), 20 / 4, dtype=np.float32),
        "B2": np.array([-10.0], dtype=np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "W1", "B1"], ["hidden"], pads=[1] * 4, name="conv1"),
        helper.make_node("Relu", ["hidden"], ["relu"], name="relu"),
        helper.make_node("Conv", ["relu", "W2", "B2"], ["logits"], name="conv2"),
        helper.make_node("Sigmoid", ["logits"], ["output"], name="sigmoid"),
    ]
    shape = ["N", 1, SIDE, SIDE]
    graph = helper.make_graph(
        nodes,
        "two_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _disk_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 [0, 1], labels int32): bright separated disks on a dark noisy field."""
    rows, cols = np.mgrid[:SIDE, :SIDE]
    labels = np.zeros((SIDE, SIDE), dtype=np.int32)
    for number in range(DISKS_PER_IMAGE):
        row, col = 48 + 160 * (number // 2), 48 + 160 * (number % 2)
        row, col = row + rng.integers(-10, 10), col + rng.integers(-10, 10)
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= 24**2] = number + 1
    image = np.where(labels > 0, 0.9, 0.1) + rng.normal(0, 0.03, labels.shape)
    return np.clip(image, 0, 1).astype(np.float32), labels


@pytest.fixture
def membrane_workspace(tiny_models_dir: Path, tmp_path: Path) -> Workspace:
    """The tiny membrane model (3x3 mean + sigmoid) and a processed index of disk images."""
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    card = json.loads((models_dir / "membrane.json").read_text())
    card["sha256"] = write_two_conv_model(models_dir / "membrane.onnx")
    (models_dir / "membrane.json").write_text(json.dumps(card))
    workspace = Workspace("membrane", tmp_path / "data", tmp_path / "runs", models_dir)
    rng = np.random.default_rng(0)
    splits = ["train"] * 4 + ["test"] * 4
    write_processed_samples(workspace, [(split, *_disk_sample(rng)) for split in splits])
    return workspace


def test_float32_weights_undoes_float16_storage(tiny_models_dir: Path) -> None:
    from devolearn_web.training.export import store_weights_as_float16

    model = onnx.load(str(tiny_models_dir / "membrane.onnx"))
    original = {item.name: onnx.numpy_helper.to_array(item) for item in model.graph.initializer}
    # The tiny weights (9 values) are below the float16 threshold: force them through storage.
    from devolearn_web.training import export

    stored = export.MIN_FLOAT16_ELEMENTS
    export.MIN_FLOAT16_ELEMENTS = 1
    try:
        halved = store_weights_as_float16(model)
    finally:
        export.MIN_FLOAT16_ELEMENTS = stored
    assert any(node.op_type == "Cast" for node in halved.graph.node)

    restored = float32_weights(halved)
    assert [node.op_type for node in restored.graph.node] == ["Conv", "Sigmoid"]
    weights = {item.name: onnx.numpy_helper.to_array(item) for item in restored.graph.initializer}
    assert set(weights) == set(original)
    assert weights["W"].dtype == np.float32
    np.testing.assert_array_equal(weights["W"], original["W"].astype(np.float16).astype(np.float32))


def test_quantize_file_writes_a_qdq_model_close_to_the_float_one(tmp_path: Path) -> None:
    import onnxruntime

    float_path = tmp_path / "m.onnx"
    write_two_conv_model(float_path)
    calibration = np.random.default_rng(0).random((4, 1, SIDE, SIDE), dtype=np.float32)
    # As `quantize` does: uint8 weights where this CPU's U8S8 sums would saturate.
    int8_path = quantize_file(
        float_path, tmp_path / "m.int8.onnx", calibration, unsigned_weights=int8_sums_saturate()
    )
    graph = onnx.load(str(int8_path)).graph
    quantized_inputs = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    by_name = {node.name: node for node in graph.node}
    # The hidden layer computes on int8 weights and activations; the head stays float32.
    assert set(by_name["conv1"].input[:2]) <= quantized_inputs
    assert by_name["conv2"].input[1] == "W2" and "logits" not in quantized_inputs
    assert by_name["sigmoid"].output == ["output"]

    def run(path: Path) -> np.ndarray:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": calibration[:1]})[0]

    assert np.abs(run(int8_path) - run(float_path)).max() < 0.05


@pytest.mark.parametrize(("unsigned", "weight_type"), [(False, "INT8"), (True, "UINT8")])
def test_weights_are_uint8_when_asked(tmp_path: Path, unsigned: bool, weight_type: str) -> None:
    float_path = tmp_path / "m.onnx"
    write_two_conv_model(float_path)
    calibration = np.random.default_rng(0).random((4, 1, SIDE, SIDE), dtype=np.float32)
    int8_path = quantize_file(
        float_path, tmp_path / "m.int8.onnx", calibration, unsigned_weights=unsigned
    )
    hidden = [
        item
        for item in onnx.load(str(int8_path)).graph.initializer
        if tuple(item.dims) == (4, 1, 3, 3)  # W1, the quantized convolution's weights
    ]
    assert [onnx.TensorProto.DataType.Name(item.data_type) for item in hidden] == [weight_type]


SEGMENTATION_OK = {"same_count_fraction": 1.0, "iou_drop": 0.0, "mean_abs_count_difference": 0}
LINEAGE_OK = {"max_mae_increase": 0.4, "mean_abs_count_difference": {"A": 0.4, "E": 0.0}}


@pytest.mark.parametrize(
    ("model", "changes", "broken"),
    [
        ("nucleus", {}, []),
        ("nucleus", {"iou_drop": 0.02}, ["IoU"]),
        ("membrane", {"same_count_fraction": 0.9}, ["counts identical"]),
        ("membrane", {"mean_abs_count_difference": 0.2}, ["mean count"]),
        ("lineage", {"same_count_fraction": 0.5}, []),
        ("lineage", {"max_mae_increase": 0.6}, ["MAE"]),
        ("lineage", {"mean_abs_count_difference": {"A": 0.7, "E": 0.0}}, ["moves by 0.70"]),
    ],
)
def test_verdict_names_every_broken_rule(model: str, changes: dict, broken: list[str]) -> None:
    comparison = {**(LINEAGE_OK if model == "lineage" else SEGMENTATION_OK), **changes}
    found = verdict(model, comparison, Acceptance())
    assert len(found) == len(broken), found
    for sentence, word in zip(found, broken, strict=True):
        assert word in sentence


def test_quantize_adopts_an_accurate_int8_model(membrane_workspace: Workspace) -> None:
    record = quantize(membrane_workspace, calibration_images=4, threads=1)
    assert record["adopted"], record["attempts"]
    models_dir = membrane_workspace.models_dir
    card = json.loads((models_dir / "membrane.json").read_text())
    section = card["quantized"]
    assert section["serve"] is True and (models_dir / section["file"]).is_file()
    assert set(section["test_metrics"]) == {"float32", "int8"}
    assert card["metrics"] == {"test": {}}  # the float32 model's own metrics are untouched
    assert section["test_metrics"]["int8"]["iou"] > 0.9
    assert [attempt["recipe"] for attempt in record["attempts"]] == ["int8 everywhere"]
    # A file measured with exact int8 sums is served only on CPUs that compute it that way.
    exact = not int8_sums_saturate()
    assert ("requires_cpu_flags" in section) is exact
    assert record["int8_sums_saturate_on_this_cpu"] is not exact
    assert record["attempts"][0]["comparison"]["same_count_fraction"] == 1.0
    saved = json.loads((membrane_workspace.run_dir / "quantization.json").read_text())
    assert saved["adopted"] is True


def test_quantize_refuses_when_a_rule_breaks(membrane_workspace: Workspace) -> None:
    card_before = (membrane_workspace.models_dir / "membrane.json").read_text()
    impossible = Acceptance(min_same_count_fraction=1.01)
    record = quantize(membrane_workspace, calibration_images=4, threads=1, rules=impossible)
    assert not record["adopted"]
    # Every segmentation recipe was tried, and each says which rule it broke.
    assert len(record["attempts"]) == 2
    assert all(attempt["rejected_because"] for attempt in record["attempts"])
    assert not (membrane_workspace.models_dir / "membrane.int8.onnx").exists()
    assert (membrane_workspace.models_dir / "membrane.json").read_text() == card_before


@pytest.mark.parametrize(("saturates_here", "kept"), [(True, True), (False, False)])
def test_a_refusal_keeps_an_int8_file_only_another_cpu_could_measure(
    membrane_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, saturates_here, kept
) -> None:
    from devolearn_web.training import quantize as quantize_module

    monkeypatch.setattr(quantize_module, "int8_sums_saturate", lambda: saturates_here)
    card_path = membrane_workspace.models_dir / "membrane.json"
    card = json.loads(card_path.read_text())
    needs_vnni = {
        "file": "membrane.int8.onnx",
        "serve": True,
        "requires_cpu_flags": ["avx512_vnni"],
    }
    card_path.write_text(json.dumps({**card, "quantized": needs_vnni}))
    impossible = Acceptance(min_same_count_fraction=1.01)
    record = quantize(membrane_workspace, calibration_images=4, threads=1, rules=impossible)
    assert not record["adopted"]
    # Where int8 sums saturate, the VNNI-measured file cannot be judged: its section stays.
    # Where they are exact, the refusal is this CPU's own verdict on int8: the section goes.
    assert ("quantized" in json.loads(card_path.read_text())) is kept


def test_quantize_command_line(membrane_workspace: Workspace, capsys) -> None:
    from devolearn_web.training.cli import main

    workspace = membrane_workspace
    folders = ["--data-root", str(workspace.data_root), "--runs-root", str(workspace.runs_root)]
    folders += ["--models-dir", str(workspace.models_dir)]
    arguments = ["quantize", "--model", "membrane", *folders, "--calibration-images", "4"]
    assert main([*arguments, "--threads", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["adopted"] is True
    assert (workspace.models_dir / "membrane.int8.onnx").is_file()
