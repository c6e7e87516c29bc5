"""The HTML UI: the todo page, its htmx partials and plain-form fallbacks, and the chat page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from sample_app.config import Settings
from sample_app.main import create_app

HTMX = {"HX-Request": "true"}
TOKEN_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def page_token(client: TestClient, path: str = "/") -> str:
    """The CSRF token the page puts in its forms (the GET also sets the cookie)."""
    match = TOKEN_INPUT.search(client.get(path).text)
    assert match, "page has no CSRF token"
    return match.group(1)


def add_via_api(client: TestClient, title: str) -> int:
    response = client.post("/api/todos", json={"title": title})
    assert response.status_code == 201
    return response.json()["id"]


def api_todos(client: TestClient) -> list[dict[str, object]]:
    return client.get("/api/todos").json()


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_todo_page_renders_list_form_and_chat_link(client: TestClient) -> None:
    add_via_api(client, "Buy milk")
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="todo-list"' in response.text
    assert "Buy milk" in response.text
    assert 'hx-post="/todos"' in response.text
    assert 'href="/chat"' in response.text


def test_add_todo_htmx_returns_list_partial_and_persists(client: TestClient) -> None:
    token = page_token(client)
    response = client.post(
        "/todos", data={"title": "  Write tests  ", "csrf_token": token}, headers=HTMX
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert response.text.lstrip().startswith('<ul id="todo-list"')
    assert "Write tests" in response.text
    assert 'id="todo-form"' in response.text
    assert 'hx-swap-oob="true"' in response.text
    assert [todo["title"] for todo in api_todos(client)] == ["Write tests"]


def test_add_todo_plain_form_redirects_to_page(client: TestClient) -> None:
    token = page_token(client)
    response = client.post(
        "/todos", data={"title": "No JavaScript", "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "No JavaScript" in client.get("/").text


def test_add_todo_counts_in_metrics(client: TestClient) -> None:
    before = counter("todos_created_total")
    client.post("/todos", data={"title": "Counted", "csrf_token": page_token(client)}, headers=HTMX)
    assert counter("todos_created_total") == before + 1


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "must not be empty"), ("   ", "must not be empty"), ("x" * 201, "at most 200")],
)
def test_add_todo_htmx_invalid_title_answers_422_and_writes_nothing(
    client: TestClient, title: str, message: str
) -> None:
    token = page_token(client)
    response = client.post("/todos", data={"title": title, "csrf_token": token}, headers=HTMX)
    assert response.status_code == 422
    assert response.headers["hx-retarget"] == "#todo-form"
    assert response.headers["hx-reswap"] == "outerHTML"
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert api_todos(client) == []


def test_add_todo_plain_form_invalid_title_rerenders_page_with_422(client: TestClient) -> None:
    token = page_token(client)
    response = client.post("/todos", data={"title": " ", "csrf_token": token})
    assert response.status_code == 422
    assert "<html" in response.text
    assert "Title must not be empty." in response.text
    assert api_todos(client) == []


def test_toggle_todo_htmx_marks_done_and_back(client: TestClient) -> None:
    todo_id = add_via_api(client, "Toggle me")
    token = page_token(client)
    response = client.post(f"/todos/{todo_id}/toggle", data={"csrf_token": token}, headers=HTMX)
    assert response.status_code == 200
    assert f'<li id="todo-{todo_id}"' in response.text
    assert "todo-done" in response.text
    assert 'id="todo-counts"' in response.text  # counts swapped out of band
    assert api_todos(client)[0]["done"] is True
    client.post(f"/todos/{todo_id}/toggle", data={"csrf_token": token}, headers=HTMX)
    assert api_todos(client)[0]["done"] is False


def test_toggle_todo_plain_form_redirects(client: TestClient) -> None:
    todo_id = add_via_api(client, "Toggle without JS")
    token = page_token(client)
    response = client.post(
        f"/todos/{todo_id}/toggle", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert api_todos(client)[0]["done"] is True


def test_toggle_todo_missing_answers_404(client: TestClient) -> None:
    response = client.post(
        "/todos/999/toggle", data={"csrf_token": page_token(client)}, headers=HTMX
    )
    assert response.status_code == 404


def test_rename_todo_htmx_updates_title(client: TestClient) -> None:
    todo_id = add_via_api(client, "Old title")
    token = page_token(client)
    response = client.patch(
        f"/todos/{todo_id}", data={"title": "New title"}, headers={**HTMX, "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert "New title" in response.text
    assert api_todos(client)[0]["title"] == "New title"


def test_rename_todo_empty_title_answers_422_and_keeps_old_title(client: TestClient) -> None:
    todo_id = add_via_api(client, "Keep me")
    token = page_token(client)
    response = client.patch(
        f"/todos/{todo_id}", data={"title": "  "}, headers={**HTMX, "X-CSRF-Token": token}
    )
    assert response.status_code == 422
    assert "Title must not be empty." in response.text
    assert "data-editing" in response.text  # the edit field stays open
    assert api_todos(client)[0]["title"] == "Keep me"


def test_delete_todo_htmx_removes_it(client: TestClient) -> None:
    todo_id = add_via_api(client, "Delete me")
    token = page_token(client)
    response = client.delete(f"/todos/{todo_id}", headers={**HTMX, "X-CSRF-Token": token})
    assert response.status_code == 200
    assert "<li" not in response.text  # the item's target is replaced by nothing
    assert api_todos(client) == []


def test_delete_todo_plain_form_redirects(client: TestClient) -> None:
    todo_id = add_via_api(client, "Delete without JS")
    token = page_token(client)
    response = client.post(
        f"/todos/{todo_id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert api_todos(client) == []


def test_todo_title_with_script_is_escaped(client: TestClient) -> None:
    evil = "<script>alert('x')</script>"
    token = page_token(client)
    partial = client.post("/todos", data={"title": evil, "csrf_token": token}, headers=HTMX)
    page = client.get("/")
    for html in (partial.text, page.text):
        assert evil not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_page_scripts_are_vendored_and_served(client: TestClient) -> None:
    html = client.get("/").text
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert any("/static/vendor/htmx" in src for src in sources)
    assert any("/static/vendor/alpine-csp" in src for src in sources)
    for src in [*sources, *re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)]:
        assert src.startswith("/static/")
        response = client.get(src)
        assert response.status_code == 200, src
        assert len(response.content) > 500, src


def test_chat_page_renders_form_and_stream_client(client: TestClient) -> None:
    response = client.get("/chat")
    assert response.status_code == 200
    assert 'x-data="chatFeed"' in response.text
    assert 'action="/chat/messages"' in response.text
    assert TOKEN_INPUT.search(response.text)


def test_chat_form_post_reaches_room(client: TestClient) -> None:
    token = page_token(client, "/chat")
    before = counter("chat_messages_total")
    response = client.post(
        "/chat/messages",
        data={"author": "Ada", "text": "Hello <b>room</b>", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/chat"
    last = client.app.state.chat.history[-1]
    assert (last.author, last.text) == ("Ada", "Hello <b>room</b>")
    assert counter("chat_messages_total") == before + 1


def test_chat_form_htmx_post_returns_fresh_form_keeping_name(client: TestClient) -> None:
    token = page_token(client, "/chat")
    response = client.post(
        "/chat/messages", data={"author": "Ada", "text": "hi", "csrf_token": token}, headers=HTMX
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<form id="chat-form"')
    assert 'value="Ada"' in response.text
    assert 'name="text" type="text" value=""' in response.text
    assert client.app.state.chat.history[-1].text == "hi"


def test_chat_form_empty_text_answers_422_and_publishes_nothing(client: TestClient) -> None:
    token = page_token(client, "/chat")
    response = client.post(
        "/chat/messages", data={"author": "Ada", "text": "  ", "csrf_token": token}, headers=HTMX
    )
    assert response.status_code == 422
    assert "Message must not be empty." in response.text
    assert len(client.app.state.chat.history) == 0


def test_templates_reload_from_disk_only_in_development(settings: Settings) -> None:
    from sample_app.routes import ui

    from .test_security import PRODUCTION_SECRETS

    create_app(settings)
    assert ui.templates.env.auto_reload
    production = Settings(
        _env_file=None, app_env="production", data_dir=settings.data_dir, **PRODUCTION_SECRETS
    )
    create_app(production)
    assert not ui.templates.env.auto_reload
