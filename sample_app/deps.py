"""FastAPI dependencies: the request's settings, database session and lifecycle state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sample_app.config import Settings
from sample_app.db import Todo
from sample_app.lifecycle import Lifecycle
from sample_app.ratelimit import enforce


# Dependencies that do no blocking work are `async def`: FastAPI runs a plain `def` one in
# the thread pool, and each hop there and back cost /api/todos more than its query did
# (profiled under wrk: three hops per request, each waiting for the GIL).
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, opened on the event loop: that does no I/O (it connects at
    its first query, in the handler's thread). Closing it returns the connection to the
    pool: instant for a SQLite file, a rollback round trip to a database server, which
    then happens in the thread pool, never on the event loop."""
    database = request.app.state.db
    async with database.slots:  # see Database.slots: never more sessions than connections
        session = database.sessions()
        try:
            yield session
        finally:
            if database.engine.dialect.name == "sqlite":
                session.close()
            else:
                await run_in_threadpool(session.close)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]


# SQLite (and most databases) store ids as signed 64-bit integers: a larger id makes the
# driver raise OverflowError (a 500). Bounding the path parameter makes it a 422.
MAX_ID = 2**63 - 1
TodoId = Annotated[int, Path(ge=1, le=MAX_ID, description="A todo's id")]


def get_todo_or_404(todo_id: TodoId, session: SessionDep) -> Todo:
    """The todo with this id, or a 404 that says which id was missing."""
    todo = session.get(Todo, todo_id)
    if todo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"todo {todo_id} not found")
    return todo


TodoDep = Annotated[Todo, Depends(get_todo_or_404)]


def limit_chat_posts(request: Request) -> None:
    """429 when this client posts faster than CHAT_POST_RATE (bursts of CHAT_POST_BURST)."""
    enforce(request.app.state.chat_posts, request)
