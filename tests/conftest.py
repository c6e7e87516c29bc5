"""Shared fixtures: development settings on a temporary data dir, and a test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
