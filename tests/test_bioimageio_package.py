"""The shipped models as BioImage.IO packages: valid to bioimageio.spec offline, and their test
tensors what ONNX Runtime answers after the package's own preprocessing."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import yaml

from tests.conftest import REPOSITORY_ROOT

MODELS = ("membrane", "nucleus", "lineage")
SHIPPED_MODELS = REPOSITORY_ROOT / "models"


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    """Each shipped model's package as the app serves it, saved to a file."""
    from devolearn_web import create_app

    folder = tmp_path_factory.mktemp("packages")
    app = create_app(
        {
            "TESTING": True,
            "MODELS_DIR": SHIPPED_MODELS,
            "BIOIMAGEIO_CACHE_DIR": folder / "cache",
        }
    )
    saved = {}
    client = app.test_client()
    for name in MODELS:
        with client.get(f"/models/{name}/bioimageio.zip") as response:
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            assert response.mimetype == "application/zip"
            card = json.loads((SHIPPED_MODELS / f"{name}.json").read_text())
            assert response.headers["Content-Disposition"] == (
                f"attachment; filename=devolearn-{name}-{card['version']}.bioimageio.zip"
            )
            saved[name] = folder / f"{name}.zip"
            saved[name].write_bytes(response.data)
    return saved


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails, so a validator that tried to download would be caught."""

    def refuse(*args, **kwargs):
        raise OSError("this test runs offline: no connection may be opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", MODELS)
def test_each_package_is_valid_to_bioimageio_spec_offline(name, packages, no_network, tmp_path):
    spec = pytest.importorskip(
        "bioimageio.spec", reason="validating the package needs bioimageio.spec (dev requirements)"
    )
    from bioimageio.spec.model.v0_5 import ModelDescr

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "cache"))
        # Given an open zip: given a path, the validator leaves its own handle open.
        with zipfile.ZipFile(packages[name]) as package:
            description = spec.load_description(package, perform_io_checks=True)
    summary = description.validation_summary
    errors = [error for detail in summary.details for error in detail.errors]
    assert isinstance(description, ModelDescr), errors
    assert summary.status == "valid-format" and errors == []
    assert str(description.format_version).startswith("0.5.")
    assert str(description.license) == "MIT"
    assert description.weights.onnx is not None


@pytest.mark.parametrize("name", MODELS)
def test_test_tensors_are_what_onnx_runtime_answers(name, packages):
    from devolearn_web.bioimageio_package import apply_steps

    with zipfile.ZipFile(packages[name]) as bundle:
        rdf = yaml.safe_load(bundle.read("rdf.yaml"))
        test_input = np.load(io.BytesIO(bundle.read("test_input.npy")))
        test_output = np.load(io.BytesIO(bundle.read("test_output.npy")))
        weights = bundle.read(rdf["weights"]["onnx"]["source"])
    card = json.loads((SHIPPED_MODELS / f"{name}.json").read_text())
    # The packaged weights are the shipped file itself.
    assert weights == (SHIPPED_MODELS / card["file"]).read_bytes()
    session = onnxruntime.InferenceSession(weights, providers=["CPUExecutionProvider"])
    (tensor,) = rdf["inputs"]
    network_input = apply_steps(test_input, tensor["preprocessing"])
    assert network_input.dtype == np.float32 and test_input.ndim == 4
    output = session.run(None, {"input": network_input})[0]
    expected = apply_steps(output, rdf["outputs"][0]["postprocessing"])
    np.testing.assert_allclose(test_output, expected, rtol=1e-4, atol=1e-4)
    if card["task"] == "segmentation":
        # A real embryo: the map marks a good share of the tile, not nothing and not everything.
        inside = float((test_output >= card["output"]["default_threshold"]).mean())
        assert 0.02 < inside < 0.8
    else:
        counts = dict(zip(card["output"]["lineages"], test_output[0], strict=True))
        assert 30 < counts["A"] < 250  # embryo_sample.png is an embryo of about 100 cells


def test_segmentation_preprocessing_matches_the_apps_stretch(packages):
    """The package's scale_range on its test input gives the app's own network input, up to
    the app measuring the percentiles in the embryo's box rather than the whole tile."""
    from devolearn_web.bioimageio_package import apply_steps
    from devolearn_web.embryo import find_embryo
    from devolearn_web.imaging import decode_image
    from devolearn_web.scale import AUTOMATIC_SCALE, GridCard, initial_grid, working_image

    card = json.loads((SHIPPED_MODELS / "membrane.json").read_text())
    path = REPOSITORY_ROOT / "static" / "examples" / "seg_sample.jpg"
    pixels = decode_image(path.read_bytes(), path.name).pixels
    grid = initial_grid(pixels, GridCard.of(card), AUTOMATIC_SCALE, find_embryo(pixels).region)
    apps = working_image(pixels, grid)
    with zipfile.ZipFile(packages["membrane"]) as bundle:
        rdf = yaml.safe_load(bundle.read("rdf.yaml"))
        test_input = np.load(io.BytesIO(bundle.read("test_input.npy")))
    ours = apply_steps(test_input, rdf["inputs"][0]["preprocessing"])[0, 0]
    top, left = ((side - have) // 2 for side, have in zip(ours.shape, apps.shape, strict=True))
    middle = ours[top : top + apps.shape[0], left : left + apps.shape[1]]
    assert np.abs(middle - apps).mean() < 0.05


@pytest.mark.parametrize("name", MODELS)
def test_the_documentation_says_simulated_and_gives_the_cards_metrics(name, packages):
    with zipfile.ZipFile(packages[name]) as bundle:
        readme = bundle.read("README.md").decode("utf-8")
        rdf = yaml.safe_load(bundle.read("rdf.yaml"))
        cover = bundle.read("cover.png")
    card = json.loads((SHIPPED_MODELS / f"{name}.json").read_text())
    assert "trained only on simulated C. elegans embryos" in readme
    for limitation in card["limitations"]:
        assert limitation in readme
    first_metric = next(k for k, v in card["metrics"]["test"].items() if isinstance(v, float))
    assert f"{card['metrics']['test'][first_metric]:.4g}" in readme
    assert (
        "working grid" in readme if card["task"] == "segmentation" else "Cuts the embryo" in readme
    )
    assert cover.startswith(b"\x89PNG")
    cited = " ".join(entry.get("url", "") + entry["text"] for entry in rdf["cite"])
    assert "github.com/DevoLearn/devolearn" in cited and "Residual" in cited
    assert ("Pyramid" in cited) == (card["task"] == "segmentation")
    assert rdf["weights"]["onnx"]["sha256"] == card["sha256"]


def test_the_training_command_writes_the_same_package(packages, tmp_path):
    from devolearn_web.training.cli import main

    out = tmp_path / "lineage.zip"
    argv = ["bioimageio", "--model", "lineage", "--models-dir", str(SHIPPED_MODELS)]
    argv += ["--examples-dir", str(REPOSITORY_ROOT / "static" / "examples"), "--out", str(out)]
    assert main(argv) == 0
    with zipfile.ZipFile(out) as written, zipfile.ZipFile(packages["lineage"]) as served:
        assert sorted(written.namelist()) == sorted(served.namelist())
        for member in ("rdf.yaml", "test_input.npy", "test_output.npy", "README.md"):
            assert written.read(member) == served.read(member)


# The training CLI with PyTorch made impossible to import, as where it is not installed.
WITHOUT_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
from devolearn_web.training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_training_command_writes_a_package_without_pytorch(tmp_path):
    # `make test-fast` runs where PyTorch is not installed, and the test above is in it: the
    # command must not import the training pipeline (which needs PyTorch) to write a package.
    out = tmp_path / "lineage.zip"
    argv = ["bioimageio", "--model", "lineage", "--models-dir", str(SHIPPED_MODELS)]
    argv += ["--examples-dir", str(REPOSITORY_ROOT / "static" / "examples"), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *argv],
        capture_output=True,
        text=True,
        cwd=REPOSITORY_ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.is_file()


def test_a_package_is_built_once_then_served_from_disk(make_app, tmp_path, monkeypatch):
    from devolearn_web.views import pages

    app = make_app(MODELS_DIR=SHIPPED_MODELS, BIOIMAGEIO_CACHE_DIR=tmp_path)
    builds = []
    real_build = pages.build_package_file
    monkeypatch.setattr(
        pages, "build_package_file", lambda *args: builds.append(args) or real_build(*args)
    )
    bodies = []
    client = app.test_client()
    for _ in range(2):
        with client.get("/models/lineage/bioimageio.zip") as response:
            bodies.append(response.data)
    first, second = bodies
    assert first == second and len(builds) == 1


def test_the_card_page_links_the_package_and_an_unknown_model_is_a_404(client):
    page = client.get("/models/nucleus").get_data(as_text=True)
    assert 'href="/models/nucleus/bioimageio.zip"' in page
    response = client.get("/models/cytoplasm/bioimageio.zip")
    assert response.status_code == 404
    assert "membrane" in response.get_data(as_text=True)
