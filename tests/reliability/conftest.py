"""Fixtures for the reliability tests: damaged and slow model folders, gunicorn on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import GunicornServer, install_slow_model, start_gunicorn


@pytest.fixture(scope="session")
def slow_models_dir(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models, except nucleus: a model that takes seconds (to test time limits)."""
    folder = tmp_path_factory.mktemp("slow_models")
    for path in tiny_models_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    install_slow_model(folder, "nucleus")
    return folder


@pytest.fixture
def gunicorn_server(tmp_path: Path) -> Iterator[Callable[..., GunicornServer]]:
    """start(models_dir, **environment) -> a running gunicorn (stopped after the test)."""
    servers: list[GunicornServer] = []

    def start(models_dir: Path, **environment: str) -> GunicornServer:
        server = start_gunicorn(models_dir, tmp_path / f"gunicorn{len(servers)}.log", **environment)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
