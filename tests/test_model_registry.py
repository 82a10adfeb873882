"""The model registry: one load per model per process, thread safety, and honest problems."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from devolearn_web.errors import ModelUnavailable, UnknownModel
from devolearn_web.registry import ModelRegistry, card_problem


def test_hundred_requests_load_each_model_once(app, client, five_disks_png):
    for index in range(100):
        name = ("membrane", "nucleus", "lineage")[index % 3]
        response = client.post(
            f"/api/v1/predict/{name}", data={"file": (io.BytesIO(five_disks_png), "disks.png")}
        )
        assert response.status_code == 200
    registry = app.extensions["devolearn_registry"]
    assert registry.load_count == {"membrane": 1, "nucleus": 1, "lineage": 1}


def test_concurrent_first_requests_load_once(tiny_models_dir):
    registry = ModelRegistry(tiny_models_dir, intra_op_threads=1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(lambda i: registry.get(("membrane", "nucleus")[i % 2]), range(32)))
    assert registry.load_count == {"membrane": 1, "nucleus": 1, "lineage": 0}
    assert len({id(model.session) for model in loaded}) == 2


def test_concurrent_requests_through_the_app_load_once(app, five_disks_png):
    def post(_):
        with app.test_client() as client:
            return client.post(
                "/api/v1/predict/nucleus", data={"file": (io.BytesIO(five_disks_png), "d.png")}
            ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(post, range(18))) == {200}
    assert app.extensions["devolearn_registry"].load_count["nucleus"] == 1


def test_status_before_and_after_loading(tiny_models_dir):
    registry = ModelRegistry(tiny_models_dir)
    assert registry.status()["membrane"] == {
        "ready": True,
        "loaded": False,
        "problem": None,
        "file": "membrane.onnx",
    }
    registry.get("membrane")
    assert registry.status()["membrane"] == {
        "ready": True,
        "loaded": True,
        "problem": None,
        "file": "membrane.onnx",
    }


def test_unknown_model_lists_the_valid_names(tiny_models_dir):
    with pytest.raises(UnknownModel, match="membrane, nucleus, lineage"):
        ModelRegistry(tiny_models_dir).get("heart")


def test_missing_model_file_is_reported_and_others_still_work(models_copy):
    (models_copy / "nucleus.onnx").unlink()
    registry = ModelRegistry(models_copy)
    with pytest.raises(ModelUnavailable, match="nucleus.onnx is missing"):
        registry.get("nucleus")
    assert registry.status()["nucleus"]["ready"] is False
    assert "missing" in registry.status()["nucleus"]["problem"]
    assert registry.get("membrane").name == "membrane"


def test_missing_card_is_reported(models_copy):
    (models_copy / "lineage.json").unlink()
    registry = ModelRegistry(models_copy)
    assert "lineage.json is missing" in registry.status()["lineage"]["problem"]
    assert {"name": "lineage", "ready": False}.items() <= registry.cards()[2].items()


def test_file_that_does_not_match_its_sha256_is_refused(models_copy):
    path = models_copy / "membrane.onnx"
    path.write_bytes(path.read_bytes() + b"\x00")
    registry = ModelRegistry(models_copy)
    assert "does not match its card" in registry.status()["membrane"]["problem"]
    with pytest.raises(ModelUnavailable, match="sha256"):
        registry.get("membrane")
    assert registry.load_count["membrane"] == 0


def test_corrupt_file_without_a_digest_is_reported_after_a_failed_load(models_copy):
    card_path = models_copy / "nucleus.json"
    card = json.loads(card_path.read_text())
    del card["sha256"]
    card_path.write_text(json.dumps(card))
    (models_copy / "nucleus.onnx").write_bytes(b"this is not a protobuf")
    registry = ModelRegistry(models_copy)
    with pytest.raises(ModelUnavailable, match="damaged or not an ONNX model"):
        registry.get("nucleus")
    assert "damaged" in registry.status()["nucleus"]["problem"]


def test_a_fixed_file_is_picked_up_after_a_failure(models_copy, tiny_models_dir):
    path = models_copy / "membrane.onnx"
    path.unlink()
    registry = ModelRegistry(models_copy)
    with pytest.raises(ModelUnavailable):
        registry.get("membrane")
    path.write_bytes((tiny_models_dir / "membrane.onnx").read_bytes())
    assert registry.get("membrane").name == "membrane"
    assert registry.load_count["membrane"] == 1


def test_card_naming_another_input_is_refused(models_copy):
    card_path = models_copy / "membrane.json"
    card = json.loads(card_path.read_text())
    card["input"]["name"] = "image"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match="not 'image'"):
        ModelRegistry(models_copy).get("membrane")


def test_preload_loads_what_it_can(models_copy):
    (models_copy / "lineage.onnx").unlink()
    registry = ModelRegistry(models_copy)
    registry.preload()
    assert registry.load_count == {"membrane": 1, "nucleus": 1, "lineage": 0}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": "nucleus"}, "its name"),
        ({"task": "classification"}, "task"),
        ({"input": {"size": [256], "channels": 1, "normalisation": "unit"}}, "input.size"),
        ({"file": "../../etc/passwd"}, "plain file name"),
    ],
)
def test_invalid_cards_are_explained(tiny_models_dir, change, words):
    card = json.loads((tiny_models_dir / "membrane.json").read_text())
    card.update(change)
    assert words in card_problem("membrane", card)


def test_a_lineage_card_with_a_broken_calibration_is_explained(tiny_models_dir):
    card = json.loads((tiny_models_dir / "lineage.json").read_text())
    card["output"]["calibration"] = {"knots": {"E": {"network": [3, 1], "count": [0, 1]}}}
    assert "output.calibration.knots.E" in card_problem("lineage", card)


def test_valid_tiny_cards_have_no_problem(tiny_models_dir):
    for name in ("membrane", "nucleus", "lineage"):
        card = json.loads((tiny_models_dir / f"{name}.json").read_text())
        assert card_problem(name, card) is None


def test_a_model_with_neither_file_says_both_are_missing(models_copy):
    (models_copy / "lineage.json").unlink()
    (models_copy / "lineage.onnx").unlink()
    problem = ModelRegistry(models_copy).status()["lineage"]["problem"]
    assert "lineage.onnx and its card lineage.json are missing" in problem


def test_pool_threads_sleep_between_runs_unless_spinning_is_allowed(tiny_models_dir):
    key = "session.intra_op.allow_spinning"
    registry = ModelRegistry(tiny_models_dir, intra_op_threads=2)
    options = registry.get("nucleus").session.get_session_options()
    assert options.get_session_config_entry(key) == "0"
    spinning = ModelRegistry(tiny_models_dir, intra_op_threads=2, allow_spinning=True)
    with pytest.raises(RuntimeError, match="does not have configuration"):
        # ONNX Runtime's own default (spin) applies.
        spinning.get("nucleus").session.get_session_options().get_session_config_entry(key)
