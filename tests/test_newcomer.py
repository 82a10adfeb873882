"""What a newcomer types from a fresh clone: the README's curl examples and the batch command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _curl_commands() -> list[str]:
    """Every curl command in the README's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    joined = "\n".join(block.replace("\\\n", " ") for block in blocks)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def test_readme_curl_examples_upload_files_a_clone_has():
    uploads = [path for command in _curl_commands() for path in re.findall(r"file=@(\S+)", command)]
    assert len(uploads) >= 6
    tracked = set(
        subprocess.run(
            ["git", "ls-files", *uploads], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    # In git (so in every clone), not merely present in this checkout.
    assert sorted(set(uploads) - tracked) == []


def test_make_predict_runs_the_batch_command_without_an_activated_venv(tiny_models_dir, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = tmp_path / "results"
    image = "static/examples/simulated_nucleus_slice_16bit.tif"
    # As typed in a terminal: not a sub-make of `make test`, which would print its directory.
    outer = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    terminal = {key: value for key, value in os.environ.items() if key not in outer}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "predict", "MODEL=nucleus", f"IN={image}"]
        + [f"OUT={out}"],
        cwd=ROOT,
        env=terminal,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    command = dry[-1]
    assert command.startswith(".venv/bin/flask --app wsgi devolearn predict nucleus")
    # A shell whose PATH knows nothing of the venv, as in a fresh terminal.
    env = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["PATH"] = "/usr/bin:/bin"
    env["DEVOLEARN_MODELS_DIR"] = str(tiny_models_dir)
    subprocess.run(command, shell=True, cwd=ROOT, env=env, check=True, timeout=120)
    assert (out / "simulated_nucleus_slice_16bit.csv").is_file()
    assert (out / "simulated_nucleus_slice_16bit_labels.tif").is_file()
