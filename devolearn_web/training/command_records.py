"""The command lines that made a data set and a run, for a model card's `reproduce` (no torch)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from devolearn_web.training.layout import Workspace


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: Path, commands: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(commands, indent=2) + "\n")


# The steps that make a data set: their command lines are kept with it, in its data folder,
# so a run on another --data-root never mixes them into the default runs/ folder.
DATA_STEPS = ("simulate", "preprocess")


def _commands_path(workspace: Workspace, step: str) -> Path:
    """Where a step's command line is kept: with the data set for data steps, else the run's."""
    return workspace.data_commands_record if step in DATA_STEPS else workspace.commands_record


def record_command(workspace: Workspace, step: str, argv: list[str]) -> None:
    """Remember the command line of a step; `all` replaces the single steps it covers."""
    path = _commands_path(workspace, step)
    commands = _read_json(path) or {}
    if step == "all":
        commands.clear()
    commands.pop(step, None)  # re-inserted last: the record stays in the order steps ran
    commands[step] = "python -m devolearn_web.training " + shlex.join(argv)
    _write_json(path, commands)


def forget_preprocess_command(workspace: Workspace) -> None:
    """Drop the data set's recorded preprocess: its index went with the data `simulate` replaced."""
    commands = _read_json(workspace.data_commands_record)
    if commands is not None and commands.pop("preprocess", None) is not None:
        _write_json(workspace.data_commands_record, commands)


def _data_commands(workspace: Workspace, run_commands: dict) -> dict:
    """The data set's command lines; before they moved to the data folder, the run kept them."""
    recorded = _read_json(workspace.data_commands_record)
    if recorded is not None:
        return recorded
    return {step: line for step, line in run_commands.items() if step in DATA_STEPS}


def reproduce_command(workspace: Workspace) -> str:
    """The command lines that made this model, in the order they ran."""
    run_commands = _read_json(workspace.commands_record) or {}
    # `all` simulates and preprocesses itself: the data set's own commands would repeat them.
    data = {} if "all" in run_commands else _data_commands(workspace, run_commands)
    run_steps = [
        line for step, line in run_commands.items() if step not in DATA_STEPS and step != "card"
    ]
    steps = [*data.values(), *run_steps]
    return " && ".join(steps) or f"python -m devolearn_web.training all --model {workspace.model}"
