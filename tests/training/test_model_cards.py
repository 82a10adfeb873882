"""Model cards follow docs/model-cards.md, and the pipeline's steps fill them honestly."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.training

SHA = "a" * 64


def card_for(name: str) -> dict:
    from devolearn_web.training.cards import LIMITATIONS, build_card
    from devolearn_web.training.specs import get_spec

    return build_card(
        get_spec(name),
        sha256=SHA,
        opset=17,
        activation="none",
        training_data={"simulated": True, "description": "SIMULATED data only."},
        metrics={"test": {"iou": 0.9}},
        hyperparameters={"learning_rate": 0.002, "batch_size": 16},
        reproduce=f"python -m devolearn_web.training all --model {name}",
        limitations=LIMITATIONS[name],
        training_plot=f"{name}_training.png",
    )


def cli_folders(workspace) -> list[str]:
    """The command-line flags that point every folder of a step at the workspace."""
    return [
        "--model",
        workspace.model,
        "--data-root",
        str(workspace.data_root),
        "--runs-root",
        str(workspace.runs_root),
        "--models-dir",
        str(workspace.models_dir),
        "--docs-images-dir",
        str(workspace.docs_images_dir),
    ]


TINY_TRAINING = ["--max-steps", "2", "--batch-size", "2", "--validation-limit", "2", "--no-bf16"]


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_built_cards_are_valid_and_declare_what_the_app_reads(name):
    from devolearn_web.training.cards import validate_card

    card = card_for(name)
    assert validate_card(card) == []
    assert card["file"] == f"{name}.onnx" and card["input"]["size"] == [256, 256]
    if name == "lineage":
        assert card["input"] | {"description": ""} == {
            "name": "input",
            "size": [256, 256],
            "channels": 3,
            "normalisation": "symmetric",
            "description": "",
            "embryo_fill": card["input"]["embryo_fill"],
        }
        assert 0 < card["input"]["embryo_fill"]["length"] <= 1
        assert card["output"]["lineages"] == ["A", "E", "M", "P", "C", "D", "Z"]
        assert card["output"]["maxima"] == [250, 16, 78, 1, 31, 16, 2]
        assert card["output"]["training_range"] == {"A": 250}
    else:
        assert card["input"]["channels"] == 1 and card["input"]["normalisation"] == "unit"
        assert card["input"]["working_grid"]["object_diameter_px"]["median"] > 0
        assert card["output"]["default_threshold"] == 0.5
    # Labels without out-of-focus light (no training_data.visible_caps): the plain meaning.
    assert "out-of-focus" not in card["output"]["meaning"]
    assert not any("out-of-focus light" in sentence for sentence in card["limitations"])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("name",), "cells", "name must be one of"),
        (("task",), "lineage", "task must be"),
        (("sha256",), "ABC", "sha256"),
        (("opset",), 9, "opset"),
        (("input", "channels"), 3, "input.channels must be 1"),
        (("input", "normalisation"), "zscore", "input.normalisation"),
        (("output", "activation"), "softmax", "output.activation"),
        (("output", "default_threshold"), 1.5, "default_threshold"),
        (("training_data", "simulated"), "yes", "training_data"),
        (("limitations",), [], "limitations"),
    ],
)
def test_invalid_cards_are_caught(path, value, message):
    from devolearn_web.training.cards import validate_card, write_card

    card = copy.deepcopy(card_for("nucleus"))
    target = card
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = validate_card(card)
    assert any(message in problem for problem in problems), problems
    with pytest.raises(ValueError, match="invalid model card"):
        write_card(card, __import__("pathlib").Path("/nonexistent/never_written.json"))


def test_lineage_card_needs_lineage_order():
    from devolearn_web.training.cards import validate_card

    card = card_for("lineage")
    card["output"]["lineages"] = ["A", "E", "M"]
    assert any("output.lineages" in problem for problem in validate_card(card))


def test_end_to_end_cli_on_tiny_data_writes_onnx_metrics_and_card(
    workspace_factory, tmp_path, monkeypatch
):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from devolearn_web.file_digest import file_sha256
    from devolearn_web.training.cards import (
        VISIBLE_CAPS_LIMITATION,
        VISIBLE_CAPS_MEANING,
        validate_card,
    )
    from devolearn_web.training.cli import main
    from devolearn_web.training.simulator.held_out import learned_visible_caps

    workspace = workspace_factory("nucleus")
    common = cli_folders(workspace)
    train = [*TINY_TRAINING, "--gap-weight", "10", "--small-object-weight", "5"]
    train += ["--zoom-range", "1.15", "--freeze-batch-norm", "--no-object-dimming"]
    train += ["--projection-repeats", "2", "--tight-crops", "0.3"]
    assert main(["train", *common, *train]) == 0
    assert main(["export", *common]) == 0
    plan = json.loads(workspace.simulation_record.read_text())
    plan = {**plan, "uneven_nuclei": 0.5, "visible_caps": True}
    workspace.simulation_record.write_text(json.dumps(plan))
    samples = tmp_path / "no_samples"  # real samples are tested elsewhere; keep this one fast
    assert main(["evaluate", *common, "--samples-dir", str(samples)]) == 0
    assert main(["card", *common]) == 0

    card = json.loads(workspace.card_path.read_text())
    metrics = json.loads(workspace.metrics_json.read_text())
    assert validate_card(card) == []
    assert card["sha256"] == file_sha256(workspace.onnx_path) == metrics["sha256"]
    assert card["metrics"]["test"]["images"] == metrics["test"]["images"] > 0
    assert {"iou", "dice", "seg", "count_error_percent"} <= set(metrics["test"])
    assert metrics["targets"]["seg"]["target"] == ">= 0.85"
    data = card["training_data"]
    assert data["simulated"] is True and "SIMULATED" in data["description"]
    assert "In 50% of the train images each nucleus keeps its own brightness" in data["description"]
    assert "out-of-focus light" in data["description"]
    assert learned_visible_caps(card) and not learned_visible_caps({"training_data": {}})
    assert card["output"]["meaning"] == VISIBLE_CAPS_MEANING
    assert card["limitations"][-1] == VISIBLE_CAPS_LIMITATION
    assert data["train_seeds"] == [0, 1] and data["test_seeds"] == [2000]
    assert data["images"]["test"] == metrics["test"]["images"]
    assert card["hyperparameters"]["batch_size"] == 2 and card["hyperparameters"]["steps"] == 2
    assert card["hyperparameters"]["trained_on"] == "CPU"
    assert card["hyperparameters"]["gap_weight"] == 10.0
    assert card["hyperparameters"]["small_object_weight"] == 5.0
    assert card["hyperparameters"]["zoom_range"] == 1.15
    assert card["hyperparameters"]["freeze_batch_norm"] is True
    assert card["hyperparameters"]["object_dimming"] is False
    assert card["hyperparameters"]["projection_repeats"] == 2
    assert card["hyperparameters"]["tight_crops"] == 0.3
    assert "aspect_range" not in card["hyperparameters"]  # the default: nothing to say
    assert "initial_weights" not in card["hyperparameters"]  # random weights: no file
    assert card["export"]["parity_max_abs_difference"] <= 1e-3
    assert card["reproduce"].startswith("python -m devolearn_web.training train --model nucleus")
    assert card["training_plot"] == "nucleus_training.png"
    assert (workspace.models_dir / "nucleus_training.png").exists()


def test_a_card_says_when_only_the_projections_had_uneven_nuclei(workspace_factory):
    from devolearn_web.training.run_records import training_data_record

    workspace = workspace_factory("nucleus")
    plan = json.loads(workspace.simulation_record.read_text())
    plan = {**plan, "uneven_nuclei": 0.5, "uneven_projections_only": True}
    workspace.simulation_record.write_text(json.dumps(plan))
    description = training_data_record(workspace)["description"]
    assert "In 50% of the train projections each nucleus keeps its own brightness" in description


def test_a_card_says_when_the_train_stacks_kept_empty_ends(workspace_factory):
    from devolearn_web.training.preprocess import preprocess
    from devolearn_web.training.run_records import training_data_record

    workspace = workspace_factory("nucleus")
    assert "empty slices" not in training_data_record(workspace)["description"]
    preprocess(workspace, size=64, force=True, train_empty_ends=2)
    description = training_data_record(workspace)["description"]
    assert "keep up to 2 empty slices past each end" in description


def test_stale_metrics_never_reach_a_card(workspace_factory):
    from devolearn_web.training.run_records import metrics_record

    workspace = workspace_factory("nucleus", preprocess_size=None)
    workspace.run_dir.mkdir(parents=True)
    workspace.metrics_json.write_text(json.dumps({"sha256": "b" * 64, "test": {"iou": 1.0}}))
    assert metrics_record(workspace, SHA) == {}
    assert metrics_record(workspace, "b" * 64) == {"test": {"iou": 1.0}}


def test_seed_ranges_of_the_splits_never_overlap():
    from devolearn_web.training.simulate import plan_seeds

    seeds = plan_seeds(train=30, validation=5, test=5)
    assert seeds["train"] == list(range(30))
    assert seeds["validation"][0] == 1000 and seeds["test"][0] == 2000
    splits = [set(seeds[name]) for name in ("train", "validation", "test")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    with pytest.raises(ValueError):
        plan_seeds(train=0, validation=1, test=1)


def test_new_metrics_reach_only_the_card_of_the_measured_file(workspace_factory):
    from devolearn_web.training.evaluate import update_card_metrics

    workspace = workspace_factory("nucleus", preprocess_size=None)
    workspace.models_dir.mkdir(parents=True)
    workspace.card_path.write_text(json.dumps(card_for("nucleus")))
    measured = {"sha256": SHA, "test": {"iou": 0.95}, "targets": {}, "real_samples": {}}
    other_file = {**measured, "sha256": "b" * 64, "test": {"iou": 0.1}}
    assert update_card_metrics(workspace, other_file) is False
    assert json.loads(workspace.card_path.read_text())["metrics"]["test"] == {"iou": 0.9}
    assert update_card_metrics(workspace, measured) is True
    card = json.loads(workspace.card_path.read_text())
    assert card["metrics"] == {"test": {"iou": 0.95}, "targets": {}, "real_samples": {}}
    assert card["hyperparameters"]["batch_size"] == 16  # the rest of the card is kept


def test_the_slider_starts_where_the_cards_figures_were_measured(workspace_factory):
    from devolearn_web.training.cards import LIMITATIONS, build_card
    from devolearn_web.training.cli import card_threshold
    from devolearn_web.training.evaluate import update_card_metrics
    from devolearn_web.training.specs import get_spec

    workspace = workspace_factory("nucleus", preprocess_size=None)
    assert card_threshold(workspace, None) == 0.5  # no card yet
    workspace.models_dir.mkdir(parents=True)
    workspace.card_path.write_text(json.dumps(card_for("nucleus")))
    measured = {"sha256": SHA, "test": {"iou": 0.95}, "targets": {}, "threshold": 0.35}
    assert update_card_metrics(workspace, measured) is True
    card = json.loads(workspace.card_path.read_text())
    assert card["output"]["default_threshold"] == 0.35
    # Later steps measure at the card's threshold unless told otherwise.
    assert card_threshold(workspace, None) == 0.35
    assert card_threshold(workspace, 0.6) == 0.6
    # A card rebuilt from the run's records keeps it too.
    rebuilt = build_card(
        get_spec("nucleus"),
        sha256=SHA,
        opset=17,
        activation="none",
        training_data={"simulated": True, "description": "SIMULATED data only."},
        metrics=card["metrics"],
        hyperparameters={},
        reproduce="",
        limitations=LIMITATIONS["nucleus"],
    )
    assert rebuilt["output"]["default_threshold"] == 0.35


def shipped_card(version: str = "4.0.0", threshold: float = 0.35) -> dict:
    """The nucleus card in models/ before a new file is exported: measured at its threshold."""
    card = card_for("nucleus")
    card["version"] = version
    card["metrics"]["threshold"] = card["output"]["default_threshold"] = threshold
    return card


def test_a_new_file_starts_from_the_threshold_of_the_card_it_replaces():
    from devolearn_web.training.cards import THRESHOLD_SOURCE, carried_over_threshold

    carried = carried_over_threshold(shipped_card(), "b" * 64)
    assert carried["default_threshold"] == 0.35
    assert "version 4.0.0" in carried[THRESHOLD_SOURCE]
    assert "not re-chosen" in carried[THRESHOLD_SOURCE]
    assert carried_over_threshold(None, "b" * 64) == {}  # no card yet: the global 0.5 stays


def test_a_card_rewritten_for_the_same_file_keeps_its_threshold_and_note():
    from devolearn_web.training.cards import THRESHOLD_SOURCE, carried_over_threshold

    measured_here = carried_over_threshold(shipped_card(), SHA)
    assert measured_here == {"default_threshold": 0.35}  # chosen for this file: no note
    carried = shipped_card()
    carried["output"][THRESHOLD_SOURCE] = "carried over from version 3.0.0"
    assert carried_over_threshold(carried, SHA)[THRESHOLD_SOURCE].endswith("3.0.0")


def test_a_replaced_card_without_a_usable_threshold_carries_nothing_over():
    from devolearn_web.training.cards import carried_over_threshold

    broken = shipped_card()
    broken["output"]["default_threshold"] = "0.35"
    assert carried_over_threshold(broken, "b" * 64) == {}
    assert carried_over_threshold({"name": "nucleus"}, "b" * 64) == {}


def test_the_threshold_note_must_be_a_sentence():
    from devolearn_web.training.cards import THRESHOLD_SOURCE, validate_card

    card = shipped_card()
    card["output"][THRESHOLD_SOURCE] = ""
    assert any(THRESHOLD_SOURCE in problem for problem in validate_card(card))


def test_measuring_the_card_at_its_threshold_drops_the_carried_over_note(workspace_factory):
    from devolearn_web.training.cards import THRESHOLD_SOURCE
    from devolearn_web.training.evaluate import update_card_metrics

    workspace = workspace_factory("nucleus", preprocess_size=None)
    workspace.models_dir.mkdir(parents=True)
    card = shipped_card()
    card["output"][THRESHOLD_SOURCE] = "carried over from version 3.0.0"
    workspace.card_path.write_text(json.dumps(card))
    measured = {"sha256": SHA, "test": {"iou": 0.95}, "targets": {}, "threshold": 0.35}
    assert update_card_metrics(workspace, measured) is True
    output = json.loads(workspace.card_path.read_text())["output"]
    assert output["default_threshold"] == 0.35 and THRESHOLD_SOURCE not in output


def test_real_samples_alone_replace_only_the_cards_real_samples(workspace_factory):
    """`evaluate --real-samples-only --update-card` re-measures the real samples through the
    app's path without the test split: nothing else of the card may change."""
    from devolearn_web.training.evaluate import update_card_real_samples

    workspace = workspace_factory("nucleus", preprocess_size=None)
    workspace.models_dir.mkdir(parents=True)
    card = shipped_card()
    card["metrics"]["real_samples"] = {"embryo_sample.png": {"count": 87}}
    workspace.card_path.write_text(json.dumps(card))
    measured = {
        "sha256": SHA,
        "threshold": 0.35,
        "real_samples": {"embryo_sample.png": {"count": 77}},
    }
    for other in ({**measured, "sha256": "b" * 64}, {**measured, "threshold": 0.5}):
        assert update_card_real_samples(workspace, other) is False  # another file or threshold
    assert json.loads(workspace.card_path.read_text()) == card
    assert update_card_real_samples(workspace, measured) is True
    card["metrics"]["real_samples"] = measured["real_samples"]
    assert json.loads(workspace.card_path.read_text()) == card


def test_export_carries_the_threshold_over_until_the_new_file_is_measured(
    workspace_factory, tmp_path
):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from devolearn_web.registry import ModelRegistry
    from devolearn_web.training.cards import THRESHOLD_SOURCE
    from devolearn_web.training.cli import main

    workspace = workspace_factory("nucleus")
    common = cli_folders(workspace)
    assert main(["train", *common, *TINY_TRAINING]) == 0
    workspace.models_dir.mkdir(parents=True)
    workspace.card_path.write_text(json.dumps(shipped_card()))

    assert main(["export", *common]) == 0
    output = json.loads(workspace.card_path.read_text())["output"]
    assert output["default_threshold"] == 0.35
    assert "version 4.0.0" in output[THRESHOLD_SOURCE]
    served = ModelRegistry(workspace.models_dir).get("nucleus")  # the app loads such a card
    assert served.card["output"]["default_threshold"] == 0.35

    samples = tmp_path / "no_samples"
    assert main(["evaluate", *common, "--samples-dir", str(samples)]) == 0
    assert json.loads(workspace.metrics_json.read_text())["threshold"] == 0.35  # not 0.5
    assert main(["card", *common]) == 0
    output = json.loads(workspace.card_path.read_text())["output"]
    assert output["default_threshold"] == 0.35 and THRESHOLD_SOURCE not in output


def cli_run(step: str, data_root) -> list[str]:
    """A command line as main() receives it, for a step on another data root."""
    return [step, "--model", "nucleus", "--data-root", str(data_root)]


def test_data_steps_record_their_commands_with_the_data(workspace_factory, tmp_path, monkeypatch):
    from devolearn_web.training.cli import main

    workspace = workspace_factory("nucleus")  # already preprocessed: the step only records
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default --runs-root `runs` is relative to it
    assert main(cli_run("preprocess", workspace.data_root)) == 0
    assert not (elsewhere / "runs").exists()
    recorded = json.loads(workspace.data_commands_record.read_text())
    assert list(recorded) == ["preprocess"]
    assert f"--data-root {workspace.data_root}" in recorded["preprocess"]


def test_reproduce_lists_the_data_sets_commands_before_the_runs(workspace_factory):
    from devolearn_web.training.command_records import record_command, reproduce_command

    workspace = workspace_factory("nucleus", preprocess_size=None)
    for step in ("simulate", "preprocess", "train", "export", "card"):
        record_command(workspace, step, cli_run(step, workspace.data_root))
    assert list(json.loads(workspace.commands_record.read_text())) == ["train", "export", "card"]
    steps = [line.split()[3] for line in reproduce_command(workspace).split(" && ")]
    assert steps == ["simulate", "preprocess", "train", "export"]


def test_simulate_force_forgets_the_preprocess_of_the_data_it_deleted(
    workspace_factory, monkeypatch
):
    """simulate --force deletes the index too: reproduce must not list the old preprocess."""
    from devolearn_web.training import simulate as simulating
    from devolearn_web.training.cli import main
    from devolearn_web.training.command_records import record_command, reproduce_command

    workspace = workspace_factory("nucleus")
    for step in ("simulate", "preprocess", "train"):
        record_command(workspace, step, cli_run(step, workspace.data_root))
    monkeypatch.setattr(simulating, "_write_split", lambda *args: None)  # no rendering needed
    # The same plan again (as `all` does when resumed) keeps the data, its index and the record.
    plan = simulating.SimulationPlan(**simulating.read_simulation_record(workspace))
    simulating.simulate(workspace, plan)
    assert list(json.loads(workspace.data_commands_record.read_text())) == [
        "simulate",
        "preprocess",
    ]
    assert main([*cli_run("simulate", workspace.data_root), "--force"]) == 0
    assert not workspace.index_csv.exists()
    assert list(json.loads(workspace.data_commands_record.read_text())) == ["simulate"]
    steps = [line.split()[3] for line in reproduce_command(workspace).split(" && ")]
    assert steps == ["simulate", "train"]


def test_reproduce_reads_data_commands_that_older_runs_kept_in_the_run(workspace_factory):
    from devolearn_web.training.command_records import reproduce_command

    workspace = workspace_factory("nucleus", preprocess_size=None)
    workspace.run_dir.mkdir(parents=True)
    old = {step: f"python -m devolearn_web.training {step}" for step in ("simulate", "train")}
    workspace.commands_record.write_text(json.dumps(old))
    assert reproduce_command(workspace).split(" && ") == list(old.values())
    # Once the data folder has its own record, the run's copies are out of date.
    workspace.data_commands_record.write_text(json.dumps({"simulate": "new simulate"}))
    assert reproduce_command(workspace) == "new simulate && python -m devolearn_web.training train"


def test_reproduce_after_all_leaves_out_the_data_sets_commands(workspace_factory):
    from devolearn_web.training.command_records import record_command, reproduce_command

    workspace = workspace_factory("nucleus", preprocess_size=None)
    record_command(workspace, "simulate", cli_run("simulate", workspace.data_root))
    record_command(workspace, "all", cli_run("all", workspace.data_root))
    assert reproduce_command(workspace).split()[3] == "all"
    assert "simulate" not in reproduce_command(workspace)


def test_simulate_records_its_command_without_loading_torch(tmp_path):
    # simulate runs on machines without the training packages' heavy parts loaded.
    code = (
        "import sys; from devolearn_web.training.cli import main; "
        f"main(['simulate', '--model', 'nucleus', '--data-root', r'{tmp_path / 'data'}', "
        f"'--runs-root', r'{tmp_path / 'runs'}', '--train-seeds', '1', '--validation-seeds', '1', "
        "'--test-seeds', '1', '--timepoints', '1', '--shape', '8', '64', '80', "
        "'--projection-seeds', '0']); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    recorded = json.loads((tmp_path / "data" / "nucleus" / "commands.json").read_text())
    assert list(recorded) == ["simulate"]
