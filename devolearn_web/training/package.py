"""The shipped model as a BioImage.IO package, from the training side (no PyTorch: the
`bioimageio` command runs where only the app's requirements are installed)."""

from __future__ import annotations

from pathlib import Path

from devolearn_web.training.layout import Workspace


def write_bioimageio_package(
    workspace: Workspace, out: Path | None = None, examples_dir: Path = Path("static/examples")
) -> dict:
    """The shipped model as a BioImage.IO package (the app's GET /models/<name>/bioimageio.zip)."""
    from devolearn_web.bioimageio_package import build_package_file

    target = Path(
        out or workspace.runs_root / workspace.model / f"{workspace.model}.bioimageio.zip"
    )
    build_package_file(workspace.models_dir, examples_dir, workspace.model, target)
    return {"package": target.as_posix(), "bytes": target.stat().st_size}
