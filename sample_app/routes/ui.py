"""The HTML UI: the todo page and the chat page.

Each state-changing route answers htmx requests (header `HX-Request`) with a partial
to swap in, and plain form posts with a 303 redirect back to the page, so the UI also
works without JavaScript. Invalid input answers 422 with the form re-rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from sample_app import todos
from sample_app.assets import static_url
from sample_app.chat import ChatIn
from sample_app.db import TITLE_MAX_LENGTH, Todo
from sample_app.deps import SessionDep, TodoDep, limit_chat_posts
from sample_app.metrics import CHAT_MESSAGES, TODOS_CREATED
from sample_app.security import CSRF_FIELD, csrf_token

PACKAGE_DIR = Path(__file__).resolve().parent.parent

# Read by htmx from <meta name="htmx-config">: no eval and no injected <style> (the CSP
# forbids both), and 422/403 responses are swapped in so their messages are shown.
HTMX_CONFIG = {
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "selfRequestsOnly": True,
    # While settling a swap, htmx copies class/style from the old element to the new one
    # with the same id (setAttribute): a copied `style` (Alpine's x-show writes one) is an
    # inline style that `style-src 'self'` blocks, and no transitions here need settling.
    "attributesToSettle": [],
    "methodsThatUseUrlParams": ["get"],  # DELETE sends a body: no token in the URL and logs
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "422", "swap": True},
        {"code": "403", "swap": True, "error": True},
        {"code": "[23]..", "swap": True},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}
FIELD_LABELS = {"title": "Title", "author": "Name", "text": "Message"}


def _page_context(request: Request) -> dict[str, Any]:
    return {"csrf_token": csrf_token(request), "csrf_field": CSRF_FIELD}


templates = Jinja2Templates(directory=PACKAGE_DIR / "templates", context_processors=[_page_context])
templates.env.trim_blocks = templates.env.lstrip_blocks = True
templates.env.globals.update(
    static_url=static_url, htmx_config=HTMX_CONFIG, title_max=TITLE_MAX_LENGTH
)

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_message(exc: ValidationError) -> str:
    """One readable sentence for the first validation error."""
    error = exc.errors()[0]
    label = FIELD_LABELS.get(str(error["loc"][0]), "Value") if error["loc"] else "Value"
    if error["type"] in {"string_too_short", "string_pattern_mismatch"}:  # blank
        return f"{label} must not be empty."
    if error["type"] == "string_too_long":
        return f"{label} must be at most {error['ctx']['max_length']} characters."
    return f"{label}: {error['msg']}."


def _todo_context(session: Session, **extra: object) -> dict[str, object]:
    items = todos.list_todos(session, limit=todos.PAGE_MAX)
    total, done = todos.count_todos(session)
    counts = {"all": total, "open": total - done, "done": done}
    base = {"page": "todos", "todos": items, "counts": counts, "form_title": "", "error": None}
    base["hidden"] = total - len(items)  # the page shows the oldest PAGE_MAX, says so
    return {**base, **extra}


@router.get("/")
def todo_page(request: Request, session: SessionDep) -> Response:
    """The todo list with its add form."""
    return templates.TemplateResponse(request, "index.html", _todo_context(session))


@router.post("/todos")
def add_todo(request: Request, session: SessionDep, title: Annotated[str, Form()] = "") -> Response:
    """Add a todo; htmx gets the new list and a fresh form, a plain form a redirect."""
    try:
        data = todos.TodoCreate(title=title)
    except ValidationError as exc:
        context = _todo_context(session, form_title=title, error=error_message(exc))
        if is_htmx(request):
            headers = {"HX-Retarget": "#todo-form", "HX-Reswap": "outerHTML"}
            return templates.TemplateResponse(
                request, "partials/todo_form.html", context, 422, headers=headers
            )
        return templates.TemplateResponse(request, "index.html", context, 422)
    todos.create_todo(session, data)
    TODOS_CREATED.inc()
    if not is_htmx(request):
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(request, "partials/todo_added.html", _todo_context(session))


def _changed(request: Request, session: Session, todo: Todo | None, **extra: object) -> Response:
    """htmx: the item (or nothing, once deleted) plus the counts; otherwise back to the page."""
    if not is_htmx(request):
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    context = _todo_context(session, todo=todo, **extra)
    code = status.HTTP_422_UNPROCESSABLE_CONTENT if extra.get("edit_error") else status.HTTP_200_OK
    return templates.TemplateResponse(request, "partials/todo_changed.html", context, code)


@router.post("/todos/{todo_id}/toggle")
def toggle_todo(request: Request, todo: TodoDep, session: SessionDep) -> Response:
    """Flip a todo between open and done."""
    todos.update_todo(session, todo, todos.TodoUpdate(done=not todo.done))
    return _changed(request, session, todo)


@router.patch("/todos/{todo_id}")
def edit_todo(
    request: Request, todo: TodoDep, session: SessionDep, title: Annotated[str, Form()] = ""
) -> Response:
    """Rename a todo (the edit-in-place form; htmx only, forms cannot send PATCH)."""
    try:
        data = todos.TodoUpdate(title=title)
    except ValidationError as exc:
        return _changed(request, session, todo, edit_error=error_message(exc), edit_title=title)
    todos.update_todo(session, todo, data)
    return _changed(request, session, todo)


@router.delete("/todos/{todo_id}")
@router.post("/todos/{todo_id}/delete")
def remove_todo(request: Request, todo: TodoDep, session: SessionDep) -> Response:
    """Delete a todo (DELETE from htmx, POST from a plain form)."""
    todos.delete_todo(session, todo)
    return _changed(request, session, None)


def _chat_context(request: Request, **extra: object) -> dict[str, object]:
    history = list(request.app.state.chat.history)[-10:]
    base = {"page": "chat", "history": history, "author": "", "text": "", "error": None}
    return {**base, **extra}


@router.get("/chat")
def chat_page(request: Request) -> Response:
    """The chat room; messages arrive over Server-Sent Events from /chat/stream."""
    return templates.TemplateResponse(request, "chat.html", _chat_context(request))


@router.post("/chat/messages", dependencies=[Depends(limit_chat_posts)])
async def post_chat_message(
    request: Request, author: Annotated[str, Form()] = "", text: Annotated[str, Form()] = ""
) -> Response:
    """Publish a message (async: the room and its subscriber queues live on the event loop)."""
    try:
        data = ChatIn(author=author, text=text)
    except ValidationError as exc:
        context = _chat_context(request, author=author, text=text, error=error_message(exc))
        name = "partials/chat_form.html" if is_htmx(request) else "chat.html"
        return templates.TemplateResponse(request, name, context, 422)
    request.app.state.chat.publish(data)
    CHAT_MESSAGES.inc()
    if not is_htmx(request):
        return RedirectResponse("/chat", status.HTTP_303_SEE_OTHER)
    # A fresh form (name kept, message cleared); the message itself arrives over SSE.
    context = _chat_context(request, author=data.author)
    return templates.TemplateResponse(request, "partials/chat_form.html", context)
