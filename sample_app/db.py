"""The database: SQLAlchemy engine, session factory and the Todo table.

SQLite (a file in DATA_DIR) is the embedded default; any SQLAlchemy URL works through
DATABASE_URL. The pool settings mirror Go's database/sql knobs: max open connections,
max idle connections and connection lifetime.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Boolean, DateTime, Engine, Integer, String, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sample_app import deadline
from sample_app.config import Settings

log = logging.getLogger(__name__)

TITLE_MAX_LENGTH = 200
# How long a SQLite connection waits for another one's lock before "database is locked"
# (sqlite3's `timeout`, SQLite's busy timeout).
SQLITE_BUSY_SECONDS = 5.0


class Base(DeclarativeBase):
    """Declarative base for the app's tables."""


class Todo(Base):
    """One todo item."""

    __tablename__ = "todos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


def make_engine(settings: Settings) -> Engine:
    """An engine with the configured pool; SQLite gets WAL so several workers can share it."""
    url = make_url(settings.sqlalchemy_url)
    # A pre-ping (SELECT 1 at each checkout) finds connections a database server dropped;
    # a SQLite file has no server to drop them, and the ping was a tenth of /api/todos.
    kwargs: dict[str, object] = {"pool_pre_ping": url.get_backend_name() != "sqlite"}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() != "sqlite" or (url.database and url.database != ":memory:"):
        kwargs.update(
            pool_size=settings.db_max_idle_conns,
            max_overflow=max(settings.db_max_open_conns - settings.db_max_idle_conns, 0),
            pool_recycle=settings.db_conn_max_lifetime,
        )
    engine = create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (readers never wait for the writer), however many open it.

    WAL is a property of the file: once one connection has switched it, later ones
    read "wal" and have nothing to do. The switch itself needs the file to itself, and
    SQLite answers "database is locked" at once, without waiting the busy timeout, when
    another connection has it open. Two uvicorn workers starting on a new file did just
    that and the losing worker's start-up failure stopped the whole app (measured: 4
    processes opening a new file together, a failure in 5 rounds of 10). So: look
    first, and retry a locked switch with a growing pause, up to the busy timeout.
    """
    give_up = time.monotonic() + SQLITE_BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _claim_deadline(_session: Session, _context: object) -> None:
    deadline.claim_current()


class Database:
    """The engine and session factory the app holds for its lifetime."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # One slot per pooled connection, taken on the event loop before a request's
        # session exists and given back after it closes. Without it, more concurrent
        # requests than thread-pool tokens deadlocked the app: every token held by a
        # thread waiting for a connection, every connection held by a request waiting
        # for a token to serialize its answer (measured: 128 connections, 80 answers,
        # then nothing until the pool's 30 s timeout). Waiting requests now queue on
        # the event loop, cost nothing there, and the response deadline bounds the wait.
        self.slots = asyncio.Semaphore(max(settings.db_max_open_conns, 1))
        # After the flush, just before COMMIT: a request that has had its 504 rolls back.
        event.listen(self.sessions, "after_flush_postexec", _claim_deadline)

    def create_tables(self) -> None:
        """Create the tables that are missing, safely from several workers at once.

        `create_all` looks for each table, then creates the missing ones: two workers
        starting together on a new SQLite file both find nothing, and the second CREATE
        fails ("table todos already exists", or "database is locked" when both try to
        upgrade a read lock), which fails that worker's startup and with it uvicorn's
        whole supervisor. BEGIN IMMEDIATE takes the write lock before the look, so the
        workers take turns (waiting up to the busy timeout) and the second finds the table.
        """
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            Base.metadata.create_all(connection)
            connection.commit()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # readiness must answer, whatever the driver raises
            log.warning("database ping failed", exc_info=True)
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
        log.info("database connection pool closed")
