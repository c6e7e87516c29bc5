"""The CLI's preparation before uvicorn starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sample_app import cli


def _serve(monkeypatch: pytest.MonkeyPatch, instance_id: str) -> Path:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *_a, **_kw: None)
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("INSTANCE_ID", instance_id)
    cli.main(["serve"])
    return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def test_serve_empties_only_its_own_metrics_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    blue = _serve(monkeypatch, "blue")
    (blue / "counter_1234.db").write_bytes(b"live blue samples")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # green, same parent

    green = _serve(monkeypatch, "green")

    assert green != blue
    assert (blue / "counter_1234.db").read_bytes() == b"live blue samples"  # was: wiped
