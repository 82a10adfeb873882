"""Shared fixtures: tiny ONNX models built here (never shipped), the app, a client, image makers."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ci_skips import fail_if_unexpected
from PIL import Image

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPOSITORY_ROOT.parent / "shared" / "samples"
MODEL_SIDE = 256
LINEAGES = ["A", "E", "M", "P", "C", "D", "Z"]
LINEAGE_MAXIMA = [250, 16, 78, 1, 31, 16, 2]
OPSET = 17
# ONNX Runtime reads IR versions up to its own; opset 17 goes with IR 8.
IR_VERSION = 8
# The tiny segmentation nets compute sigmoid(GAIN * (local mean - 0.5)): bright blobs -> ~1.
SEGMENTATION_GAIN = 20.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true an unexpected skip fails (tests/ci_skips.py)."""
    report = yield
    fail_if_unexpected(report, item.config)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """Under CI=true a module skipped at import (importorskip) fails too, unless expected."""
    report = yield
    fail_if_unexpected(report, collector.config)
    return report


def _segmentation_graph(name: str, with_sigmoid: bool):
    """[N,1,256,256] -> 3x3 mean filter -> gain and offset (-> sigmoid) -> [N,1,256,256]."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.full((1, 1, 3, 3), SEGMENTATION_GAIN / 9, dtype=np.float32)
    bias = np.array([-0.5 * SEGMENTATION_GAIN], dtype=np.float32)
    conv_output = "output" if not with_sigmoid else "logits"
    nodes = [helper.make_node("Conv", ["input", "W", "B"], [conv_output], pads=[1, 1, 1, 1])]
    if with_sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["output"]))
    shape = ["N", 1, "H", "W"]  # any working grid, as the shipped networks
    return helper.make_graph(
        nodes,
        f"tiny_{name}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )


def _lineage_graph():
    """[N,3,256,256] -> GlobalAveragePool -> Flatten -> Gemm(7) -> Sigmoid -> [N,7]."""
    from onnx import TensorProto, helper, numpy_helper

    # Brighter embryos (higher mean after normalisation) give larger counts in every lineage.
    weights = np.tile(np.array([[1.0, 1.0, 1.0]], dtype=np.float32), (7, 1))
    bias = np.linspace(-1.0, 1.0, 7, dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    return helper.make_graph(
        nodes,
        "tiny_lineage",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["N", 3, MODEL_SIDE, MODEL_SIDE]
            )
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 7])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )


def _save_model(graph, path: Path) -> str:
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# The tiny nets find bright blobs at any size: a wide band, so one look settles the grid.
TINY_WORKING_GRID = {
    "working_grid": {
        "aspect": 1.0,
        "embryo_length_px": 180.0,
        "object_diameter_px": {"median": 14.0, "range": [2.0, 400.0]},
        "um_per_px": 0.25,
    }
}
TINY_EMBRYO_FILL = {"embryo_fill": {"length": 0.6, "width": 0.65}}


def tiny_card(name: str, sha256: str) -> dict:
    """A complete model card (docs/model-cards.md) for a tiny test model."""
    segmentation = name != "lineage"
    output: dict = {
        "name": "output",
        # membrane.onnx ends in a Sigmoid; nucleus.onnx does not, so the app applies it.
        "activation": "sigmoid" if name == "nucleus" else "none",
        "meaning": "test output",
    }
    if segmentation:
        output["default_threshold"] = 0.5
    else:
        output.update(lineages=LINEAGES, maxima=LINEAGE_MAXIMA, training_range={"A": 250})
    return {
        "name": name,
        "title": {"membrane": "Cell membrane segmentation", "nucleus": "Nucleus segmentation"}.get(
            name, "Lineage population"
        ),
        "version": "0.0.1-test",
        "task": "segmentation" if segmentation else "lineage",
        "architecture": "tiny test network (3x3 mean filter)" if segmentation else "tiny test head",
        "file": f"{name}.onnx",
        "sha256": sha256,
        "opset": OPSET,
        "input": {
            "name": "input",
            "size": [MODEL_SIDE, MODEL_SIDE],
            "channels": 1 if segmentation else 3,
            "normalisation": "unit" if segmentation else "symmetric",
            "description": "test input",
            **(TINY_WORKING_GRID if segmentation else TINY_EMBRYO_FILL),
        },
        "output": output,
        "training_data": {
            "simulated": True,
            "description": "No training: fixed weights chosen by the test suite.",
            "train_seeds": [],
            "validation_seeds": [],
            "test_seeds": [],
            "images": {"train": 0, "validation": 0, "test": 0},
        },
        "metrics": {"test": {}},
        "hyperparameters": {},
        "training_plot": f"{name}_training.png",
        "reproduce": "pytest (tests/conftest.py builds it)",
        "limitations": ["A test model: it only finds bright blobs."],
    }


def build_tiny_models(folder: Path) -> Path:
    """Write membrane/nucleus/lineage .onnx + .json cards + training plots into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {
        "membrane": _segmentation_graph("membrane", with_sigmoid=True),
        "nucleus": _segmentation_graph("nucleus", with_sigmoid=False),
        "lineage": _lineage_graph(),
    }
    for name, graph in graphs.items():
        sha256 = _save_model(graph, folder / f"{name}.onnx")
        card = tiny_card(name, sha256)
        (folder / f"{name}.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        plot = np.linspace(0, 255, 64 * 48, dtype=np.uint8).reshape(48, 64)
        Image.fromarray(plot, mode="L").save(folder / card["training_plot"])
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the three tiny models and their cards, built once per test session."""
    # No importorskip: without onnx (requirements-dev.txt) most app tests would skip silently.
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def models_copy(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny models that a test may damage."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in tiny_models_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


@pytest.fixture
def make_app(tiny_models_dir: Path) -> Callable:
    """Build an app for tests; keyword arguments override its config."""
    from devolearn_web import create_app

    def build(**overrides):
        config = {"TESTING": True, "MODELS_DIR": tiny_models_dir, "SECRET_KEY": "test"}
        config.update(overrides)
        return create_app(config)

    return build


@pytest.fixture
def app(make_app):
    """The app on the tiny models."""
    return make_app()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


def encode_image(array: np.ndarray, image_format: str = "PNG", mode: str | None = None, **options):
    """Bytes of an image file made in memory from a numpy array (PIL for all but TIFF stacks)."""
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def encode_tiff(array: np.ndarray, **options) -> bytes:
    """Bytes of a TIFF written by tifffile (any dtype; a 3D array is a multi-page stack)."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def draw_disks(
    shape: tuple[int, int], centres: list[tuple[float, float]], radius: float, value: float = 1.0
) -> np.ndarray:
    """float32 HxW: bright disks (value) at (x, y) centres on a black background."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for x, y in centres:
        image[(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] = value
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


FIVE_DISKS = [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]


@pytest.fixture
def five_disks_png() -> bytes:
    """A 200x140 8-bit PNG with five separated bright disks of radius 12."""
    return encode_image(to_uint8(draw_disks((140, 200), FIVE_DISKS, 12)))


def sample_path(name: str) -> Path:
    """A real sample from ../shared/samples, or skip the test saying why."""
    path = SAMPLES_DIR / name
    if not path.is_file():
        pytest.skip(f"real sample {name} not found in {SAMPLES_DIR} (the shared/ folder is absent)")
    return path


@pytest.fixture
def real_sample() -> Callable[[str], Path]:
    """real_sample("embryo_sample.png") -> its path in ../shared/samples, or skip saying why."""
    return sample_path


@pytest.fixture
def image_maker():
    """The image helpers, for tests: encode_image, encode_tiff, draw_disks, to_uint8."""
    return ImageMaker


class ImageMaker:
    """Namespace of the helpers above (fixtures cannot be imported, functions in conftest can't)."""

    five_disks = FIVE_DISKS
    encode = staticmethod(encode_image)
    tiff = staticmethod(encode_tiff)
    disks = staticmethod(draw_disks)
    uint8 = staticmethod(to_uint8)
