"""Todo operations shared by the JSON API and the HTML UI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from sample_app.db import TITLE_MAX_LENGTH, Todo
from sample_app.fields import non_blank

Title = non_blank(TITLE_MAX_LENGTH)


class TodoCreate(BaseModel):
    """A new todo: a non-blank title of at most 200 characters."""

    model_config = ConfigDict(extra="forbid")
    title: Title


class TodoUpdate(BaseModel):
    """A partial update: a new title, a new done state, or both."""

    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    done: StrictBool | None = None  # JSON true/false only: 0, 1, "yes" are errors


class TodoOut(BaseModel):
    """A todo as the API returns it."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    done: bool


# A list answer is bounded whatever the table holds: a client pages with `after`.
PAGE_DEFAULT = 100
PAGE_MAX = 500


def list_todos(session: Session, *, limit: int = PAGE_DEFAULT, after: int = 0) -> list[Todo]:
    """At most `limit` todos with an id above `after`, oldest first."""
    query = select(Todo).where(Todo.id > after).order_by(Todo.id).limit(min(limit, PAGE_MAX))
    return list(session.scalars(query))


def count_todos(session: Session) -> tuple[int, int]:
    """(all, done), counted by the database, not by loading every row."""
    total, done = session.execute(
        select(func.count(), func.coalesce(func.sum(case((Todo.done, 1), else_=0)), 0))
    ).one()
    return int(total), int(done)


def create_todo(session: Session, data: TodoCreate) -> Todo:
    todo = Todo(title=data.title, done=False)
    session.add(todo)
    session.commit()
    return todo


def update_todo(session: Session, todo: Todo, data: TodoUpdate) -> Todo:
    for field, value in data.model_dump(exclude_none=True).items():
        setattr(todo, field, value)
    session.commit()
    return todo


def delete_todo(session: Session, todo: Todo) -> None:
    session.delete(todo)
    session.commit()
