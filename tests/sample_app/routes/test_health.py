"""Liveness, readiness, version and the development-only endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sample_app import buildinfo
from sample_app.config import Settings
from sample_app.main import create_app

SECRET = "s" * 40


def test_health_ok(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_ok_when_database_answers(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200


def test_ready_503_while_draining(client: TestClient) -> None:
    client.app.state.lifecycle.begin_draining()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "draining"}
    assert client.get("/health").status_code == 200  # still alive, just not taking work


def test_ready_503_when_database_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        app_env="development",
        database_url=f"sqlite:///{tmp_path}/missing/dir/x.db",
    )
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.db.engine.dispose()
        (tmp_path / "missing" / "dir" / "x.db").unlink()
        (tmp_path / "missing" / "dir").rmdir()
        assert client.get("/ready").status_code == 503


def version_of_a_new_app(settings: Settings) -> dict[str, str]:
    """/version of an app created now: it reads its build identity once, at start-up."""
    with TestClient(create_app(settings)) as client:
        return client.get("/version").json()


def test_version_reports_dev_fallback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(buildinfo, "STAMP_FILE", tmp_path / "none.json")
    for name in ("APP_VERSION", "GIT_COMMIT", "BUILD_TIME"):
        monkeypatch.delenv(name, raising=False)
    body = version_of_a_new_app(settings)
    assert body["version"].endswith("+dev")
    assert body["commit"] == "unknown"
    assert set(body) == {"version", "commit", "build_time", "python"}


def test_version_reports_stamped_build(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(buildinfo, "STAMP_FILE", tmp_path / "_build.json")
    buildinfo.stamp("2.0.0", "abc123", "2026-01-01T00:00:00Z")
    monkeypatch.setenv("APP_VERSION", "ignored-when-stamped")
    body = version_of_a_new_app(settings)
    assert (body["version"], body["commit"], body["build_time"]) == (
        "2.0.0",
        "abc123",
        "2026-01-01T00:00:00Z",
    )


def test_stamp_uses_source_date_epoch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(buildinfo, "STAMP_FILE", tmp_path / "_build.json")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert buildinfo.stamp(version="1.2.3").build_time == "2023-11-14T22:13:20Z"


def test_debug_slow_available_in_development(client: TestClient) -> None:
    assert client.get("/debug/slow", params={"seconds": 0}).json() == {"slept": 0.0}


def test_debug_slow_absent_in_production(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        app_env="production",
        data_dir=tmp_path,
        csrf_secret=SECRET,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/debug/slow", params={"seconds": 0}).status_code == 404
        assert client.get("/docs").status_code == 404


def test_slow_handler_past_deadline_is_504(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, app_env="development", data_dir=tmp_path, request_timeout=0.2
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/debug/slow", params={"seconds": 2})
    assert response.status_code == 504
    assert response.json() == {"detail": "no response within 0.2s"}


@pytest.mark.parametrize("path", ["/health", "/ready", "/version"])
def test_write_to_read_only_endpoint_is_405(client: TestClient, path: str) -> None:
    response = client.put(path)  # no CSRF token: the method is wrong before anything else
    assert response.status_code == 405
    assert response.headers["allow"].startswith("GET")


def test_post_to_unknown_path_is_404(client: TestClient) -> None:
    assert client.post("/no/such/page", data={"a": "b"}).status_code == 404


def test_version_is_the_build_the_process_started_with(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = client.get("/version").json()
    monkeypatch.setattr(buildinfo, "STAMP_FILE", tmp_path / "_build.json")
    buildinfo.stamp("9.9.9", "written-later", "2026-01-01T00:00:00Z")  # a deploy's new files
    assert client.get("/version").json() == before
