"""The response deadline against a sync handler whose commit is slow (a real uvicorn).

A second connection holds SQLite's write lock, so the app's INSERT waits past
REQUEST_TIMEOUT: the client gets its 504 while the handler's thread keeps going.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from sample_app.config import Settings
from sample_app.deadline import Deadline, DeadlinePassedError
from sample_app.main import create_app
from tests.sample_app.live import serve

TIMEOUT = 0.5
LOCK_HELD = 0.8  # within the 504 plus its grace (another TIMEOUT)


def test_post_timed_out_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, app_env="development", data_dir=tmp_path, request_timeout=TIMEOUT
    )
    with serve(create_app(settings)) as (host, port):
        base = f"http://{host}:{port}/api/todos"
        assert httpx.get(base, timeout=5).json() == []  # the table exists
        lock = sqlite3.connect(tmp_path / "todos.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        first = httpx.post(base, json={"title": "once"}, timeout=5)
        time.sleep(max(LOCK_HELD - (time.monotonic() - started), 0))
        lock.execute("COMMIT")
        lock.close()
        time.sleep(1.0)  # the handler's thread gets the lock and finishes
        after_504 = httpx.get(base, timeout=5).json()
        retry = httpx.post(base, json={"title": "once"}, timeout=5)
        final = httpx.get(base, timeout=5).json()
    assert first.status_code == 504
    assert after_504 == []
    assert retry.status_code == 201
    assert [todo["title"] for todo in final] == ["once"]


def test_deadline_expired_refuses_commit() -> None:
    deadline = Deadline()
    assert deadline.expire()
    with pytest.raises(DeadlinePassedError):
        deadline.claim()


def test_deadline_claimed_is_not_cut_off() -> None:
    deadline = Deadline()
    deadline.claim()
    assert not deadline.expire()
    deadline.claim()  # a second commit of the same request


def test_openapi_says_504_wrote_nothing(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "nothing was written" in paths["/api/todos"]["post"]["responses"]["504"]["description"]
