"""The training command line: one argparse sub-command per step, each with its own function."""

from __future__ import annotations

import pytest

from devolearn_web.training.cli import RUNNERS, build_parser, simulation_plan

# The arguments a sub-command needs besides --model.
REQUIRED = {"import": ["--onnx", "original.onnx"]}


@pytest.mark.parametrize("command", list(RUNNERS))
def test_each_sub_command_runs_its_own_function(command):
    args = build_parser().parse_args([command, "--model", "nucleus", *REQUIRED.get(command, [])])
    assert args.command == command
    assert args.func is RUNNERS[command]


def test_an_unknown_sub_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["trian", "--model", "nucleus"])
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_a_split_of_zero_seeds_is_refused_not_replaced_by_the_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--model", "nucleus", "--train-seeds", "0"])
    assert "--train-seeds: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model", "nucleus", "--tight-crops", "30"])
    assert "--tight-crops: must lie between 0 and 1, got 30" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["preprocess", "--model", "nucleus", "--train-empty-ends", "-1"])
    assert "--train-empty-ends: must be 0 or more, got -1" in capsys.readouterr().err
    given = build_parser().parse_args(["simulate", "--model", "nucleus", "--test-seeds", "3"])
    assert simulation_plan(given).seeds["test"] == [2000, 2001, 2002]


def test_a_blend_needs_both_the_starting_file_and_the_weight(capsys, tmp_path):
    from devolearn_web.training.cli import main

    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--model", "nucleus", "--blend-weight", "2"])
    assert "--blend-weight: must lie between 0 and 1, got 2" in capsys.readouterr().err
    roots = ["--runs-root", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models")]
    assert main(["export", "--model", "nucleus", "--blend-weight", "0.5", *roots]) == 1
    assert "--blend-with and --blend-weight go together" in capsys.readouterr().err
