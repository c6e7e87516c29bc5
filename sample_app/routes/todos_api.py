"""The JSON API for todos: `/api/todos`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from sample_app import todos
from sample_app.deps import MAX_ID, SessionDep, TodoDep
from sample_app.metrics import TODOS_CREATED

JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


def require_json(request: Request) -> None:
    """Refuse bodies that are not JSON (415).

    Browsers may send text/plain or type-less bodies cross-site without a CORS
    preflight; insisting on application/json is what keeps this API safe from CSRF
    without a token, while scripts and load generators stay simple.
    """
    if request.method in JSON_METHODS:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"
            )


# Statuses the app answers besides FastAPI's own 422, so the OpenAPI document lists them.
BODY_ERRORS: dict[int | str, dict[str, object]] = {
    413: {"description": "Body larger than MAX_BODY_BYTES"},
    415: {"description": "Body not sent as application/json"},
}
# A write either commits before its deadline or is rolled back (sample_app.deadline).
TIMED_OUT: dict[int | str, dict[str, object]] = {
    504: {"description": "No answer within REQUEST_TIMEOUT; nothing was written, safe to retry"}
}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No todo with this id"}}

router = APIRouter(prefix="/api/todos", tags=["todos"], dependencies=[Depends(require_json)])


@router.get("", response_model=list[todos.TodoOut])
def list_todos(
    session: SessionDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=todos.PAGE_MAX)] = todos.PAGE_DEFAULT,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only ids above this")] = 0,
) -> list[todos.Todo]:
    """Todos oldest first, at most `limit`; a full page links the next (`Link: rel=next`)."""
    items = todos.list_todos(session, limit=limit, after=after)
    if len(items) == limit:
        response.headers["Link"] = f'</api/todos?after={items[-1].id}&limit={limit}>; rel="next"'
    return items


@router.post(
    "",
    response_model=todos.TodoOut,
    status_code=status.HTTP_201_CREATED,
    responses={**BODY_ERRORS, **TIMED_OUT},
)
def create_todo(data: todos.TodoCreate, session: SessionDep) -> todos.Todo:
    """Create a todo (title: 1-200 characters after trimming)."""
    todo = todos.create_todo(session, data)
    TODOS_CREATED.inc()
    return todo


@router.get("/{todo_id}", response_model=todos.TodoOut, responses=NOT_FOUND)
def read_todo(todo: TodoDep) -> todos.Todo:
    """One todo by id."""
    return todo


@router.patch(
    "/{todo_id}", response_model=todos.TodoOut, responses={**NOT_FOUND, **BODY_ERRORS, **TIMED_OUT}
)
def update_todo(data: todos.TodoUpdate, todo: TodoDep, session: SessionDep) -> todos.Todo:
    """Change a todo's title and/or done state."""
    return todos.update_todo(session, todo, data)


@router.delete(
    "/{todo_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**NOT_FOUND, **TIMED_OUT}
)
def delete_todo(todo: TodoDep, session: SessionDep) -> Response:
    """Delete a todo."""
    todos.delete_todo(session, todo)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
