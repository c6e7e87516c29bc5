"""Shared fixtures: development settings on a temporary data dir, a test client, and the
container engines (each container test runs on podman and on Docker Engine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sample_app.config import Settings
from sample_app.main import create_app

# The client address the app sees: /metrics answers only allowed networks.
LOOPBACK_CLIENT = ("127.0.0.1", 50000)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development settings with the database in a fresh temporary directory."""
    return Settings(_env_file=None, app_env="development", data_dir=tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client on loopback for an app whose lifespan (startup/shutdown) runs around the test."""
    with TestClient(create_app(settings), client=LOOPBACK_CLIENT) as test_client:
        yield test_client


ENGINE_KINDS = ("podman", "docker")
ENGINE_CAPABILITY = {"podman": "podman", "docker": "docker-engine"}


def require_engine(kind: str) -> None:
    """Skip when `kind` is missing or OPSLAB_ENGINE names the other; fail if strict and missing."""
    from opslab.caps import check, strict_mode

    wanted = os.environ.get("OPSLAB_ENGINE", "").strip().lower()
    if wanted and wanted != kind:
        pytest.skip(f"OPSLAB_ENGINE={wanted}")
    capability = check(ENGINE_CAPABILITY[kind])
    if capability.available:
        return
    if strict_mode():
        pytest.fail(f"{kind} is missing and OPSLAB_STRICT is set:\n{capability.install_hint}")
    pytest.skip(f"{kind}: {capability.detail}")


@pytest.fixture(scope="module", params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's tests on each engine in turn; a service started here is stopped after."""
    from opslab import containers

    require_engine(request.param)
    found = containers.engine(request.param)
    yield found
    if found.service is not None:
        found.service.stop()
