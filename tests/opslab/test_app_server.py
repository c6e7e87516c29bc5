"""start_app runs the real sample app as `python -m sample_app serve` on a free port."""

from __future__ import annotations

import socket

import pytest

from opslab import registry
from opslab.app import start_app
from opslab.load import run_load
from opslab.procs import ProcessError

pytestmark = pytest.mark.slow


def test_start_app_answers_health_ready_and_version() -> None:
    with start_app(name="t-app") as app, app.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").json() == {"status": "ready"}
        assert "version" in app.version()
        assert client.get("/api/todos").json() == []  # a fresh DATA_DIR
        assert app.data_dir.is_relative_to(app.workdir)
        assert app.url == f"http://127.0.0.1:{app.port}"


def test_start_app_with_same_name_replaces_running_instance() -> None:
    first = start_app(name="t-app-replace")
    second = start_app(name="t-app-replace")
    try:
        assert not first.running
        assert second.running
        assert registry.lookup("t-app-replace") is second
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", first.port)) != 0
    finally:
        second.stop()


def test_start_app_in_production_gets_generated_secrets_and_no_debug_routes() -> None:
    with start_app(name="t-app-prod", app_env="production") as app, app.client() as client:
        assert client.get("/ready").status_code == 200
        assert client.get("/debug/slow", params={"seconds": 0}).status_code == 404


def test_start_app_refusing_config_raises_with_the_apps_message() -> None:
    with pytest.raises(ProcessError, match="exited with 2") as raised:
        start_app(
            name="t-app-bad",
            app_env="production",
            generate_secrets=False,
            csrf_secret="changeme",
            timeout=20,
        )
    assert "CSRF_SECRET" in str(raised.value)
    assert registry.lookup("t-app-bad") is None


def test_run_load_against_app_counts_created_and_not_found() -> None:
    with start_app(name="t-app-load", instance_id="blue") as app:
        created = run_load(app, path="/api/todos", method="POST", json={"title": "x"}, requests=8)
        missing = run_load(app, path="/api/todos/999999", requests=4)
        with app.client() as client:
            todos = client.get("/api/todos").json()

    assert created.counts["2xx"] == 8
    assert created.header_counts() == {"blue": 8}
    assert missing.counts["4xx"] == 4
    assert len(todos) == 8
