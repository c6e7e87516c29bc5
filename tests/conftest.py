"""Shared fixtures: development settings on a temporary data dir, and a test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sample_app.config import Settings
from sample_app.main import create_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development settings with the database in a fresh temporary directory."""
    return Settings(_env_file=None, app_env="development", data_dir=tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client for an app whose lifespan (startup/shutdown) runs around the test."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
