"""The database layer: workers that start together on a new file must all start."""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.queues import Queue
from pathlib import Path

import pytest
from sqlalchemy import event, inspect

from sample_app.config import Settings
from sample_app.db import Database, Todo

# How long the first worker waits for the second to overtake it. Only the fixed code
# spends it (the second worker is blocked on the lock); it bounds the test's dead time.
OVERTAKE_WAIT = 1.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, app_env="development", data_dir=tmp_path)


def test_two_workers_creating_tables_at_once_both_start(settings: Settings) -> None:
    # Forces the race two uvicorn workers on a new SQLite file run into now and then:
    # worker A has looked and found no table; worker B then looks, creates and commits
    # (without the write lock) before A's CREATE runs, which fails.
    first, second = Database(settings), Database(settings)
    a_looked, b_finished = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def pause_first_worker(_table: object, connection: object, **_kw: object) -> None:
        if threading.current_thread().name == "worker-a":
            a_looked.set()
            b_finished.wait(OVERTAKE_WAIT)  # fixed code: B waits on A's lock instead

    def worker(database: Database, after: threading.Event | None) -> None:
        try:
            if after is not None:
                assert after.wait(10), "worker A never reached CREATE TABLE"
            database.create_tables()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            if after is not None:
                b_finished.set()

    event.listen(Todo.__table__, "before_create", pause_first_worker)
    try:
        threads = [
            threading.Thread(target=worker, args=(first, None), name="worker-a"),
            threading.Thread(target=worker, args=(second, a_looked), name="worker-b"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        event.remove(Todo.__table__, "before_create", pause_first_worker)
        first.dispose()
        second.dispose()
    assert errors == []
    assert "todos" in inspect(Database(settings).engine).get_table_names()


# Processes opening one new file together per round, and rounds. Without the WAL retry
# 3 rounds in 10 had a failure here, so 20 rounds all pass by chance with p < 0.001.
OPENERS, ROUNDS = 4, 20


def _open_and_create(data_dir: Path, start_at: float, results: Queue) -> None:
    database = Database(Settings(_env_file=None, app_env="development", data_dir=data_dir))
    while time.time() < start_at:  # every process past its imports, then all at once
        pass
    try:
        database.create_tables()
        results.put("")
    except Exception as exc:  # reported by the parent
        results.put(repr(exc)[:200])


def test_processes_opening_a_new_file_together_all_start(tmp_path: Path) -> None:
    # The first connection to a new file switches it to WAL, which needs the file to
    # itself: SQLite refuses at once ("database is locked", no busy timeout) while
    # another process is in the middle of its own switch. This is uvicorn's workers
    # starting together, where one refusal stopped the whole app (a section 05 flake).
    context = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(ROUNDS):
        results = context.Queue()
        start_at = time.time() + 0.1
        openers = [
            context.Process(
                target=_open_and_create, args=(tmp_path / str(round_), start_at, results)
            )
            for _ in range(OPENERS)
        ]
        for opener in openers:
            opener.start()
        failures += [error for _ in openers if (error := results.get(timeout=30))]
        for opener in openers:
            opener.join(10)
    assert failures == []


def test_create_tables_keeps_existing_rows(settings: Settings) -> None:
    database = Database(settings)
    database.create_tables()
    with database.sessions() as session:
        session.add(Todo(title="survives a restart"))
        session.commit()
    database.create_tables()  # the next start
    with database.sessions() as session:
        assert [todo.title for todo in session.query(Todo)] == ["survives a restart"]
    database.dispose()


def test_a_sqlite_checkout_sends_no_ping(settings: Settings) -> None:
    """The pool hands out a SQLite connection without a `SELECT 1` first (no server drops it)."""
    database = Database(settings)
    database.create_tables()
    database.engine.dispose()  # new connections from here on, each one traced
    statements: list[str] = []
    trace = lambda dbapi_connection, _record: dbapi_connection.set_trace_callback(statements.append)  # noqa: E731
    event.listen(database.engine, "connect", trace)
    for _ in range(3):
        with database.engine.connect():
            pass
    database.dispose()
    assert statements == []
