"""Security headers on every response, and CSRF protection of the HTML form routes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer

from sample_app.config import Settings
from sample_app.main import create_app

HTMX = {"HX-Request": "true"}
TOKEN_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
BASE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}
PRODUCTION_SECRETS = {
    "csrf_secret": "c" * 16 + "0123456789abcdef0123",
}


def page_token(client: TestClient, path: str = "/") -> str:
    match = TOKEN_INPUT.search(client.get(path).text)
    assert match, "page has no CSRF token"
    return match.group(1)


def api_todos(client: TestClient) -> list[dict[str, object]]:
    return client.get("/api/todos").json()


def assert_security_headers(headers: Mapping[str, str]) -> None:
    for name, value in BASE_HEADERS.items():
        assert headers[name] == value, name
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "camera=()" in headers["permissions-policy"]


@pytest.fixture
def production_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        _env_file=None, app_env="production", data_dir=tmp_path, **PRODUCTION_SECRETS
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/", "/chat", "/health", "/ready", "/version", "/metrics", "/api/todos"]
)
def test_security_headers_present_on_ok_response(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert_security_headers(response.headers)


def test_security_headers_present_on_not_found(client: TestClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert_security_headers(response.headers)


def test_security_headers_present_on_server_error(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert_security_headers(response.headers)


def test_security_headers_on_sse_stream_without_cookie(client: TestClient) -> None:
    client.app.state.lifecycle.begin_draining()  # the stream then ends after its "bye"
    response = client.get("/chat/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: bye" in response.text
    assert_security_headers(response.headers)
    assert "set-cookie" not in response.headers


def test_hsts_absent_in_development(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/health").headers


def test_hsts_present_outside_development(production_client: TestClient) -> None:
    response = production_client.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert_security_headers(response.headers)


def test_csp_allows_only_self_hosted_scripts_without_eval(client: TestClient) -> None:
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'"
    # Every script is an external file from /static: nothing inline that the CSP would block.
    scripts = re.findall(r"<script([^>]*)>", response.text)
    assert scripts
    assert all('src="/static/' in attributes for attributes in scripts)
    assert "style=" not in response.text


def test_csrf_cookie_is_httponly_and_samesite(client: TestClient) -> None:
    cookie = client.get("/").headers["set-cookie"]
    assert cookie.startswith("csrftoken=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development runs on plain http


def test_csrf_cookie_is_secure_outside_development(production_client: TestClient) -> None:
    assert "Secure" in production_client.get("/").headers["set-cookie"]


def test_csrf_cookie_not_set_on_ops_endpoints(client: TestClient) -> None:
    for path in ("/health", "/ready", "/version", "/metrics"):
        assert "set-cookie" not in client.get(path).headers, path


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
def test_csrf_missing_token_answers_403_and_writes_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    client.get("/")  # has the cookie, but sends no token
    response = client.post("/todos", data={"title": "forged"}, headers=headers)
    assert response.status_code == 403
    assert "CSRF token missing" in response.text
    assert api_todos(client) == []


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        URLSafeTimedSerializer("another-secret", salt="csrf").dumps("whatever"),
    ],
    ids=["garbage", "foreign-signature"],
)
def test_csrf_bad_token_answers_403_and_writes_nothing(client: TestClient, token: str) -> None:
    client.get("/")
    response = client.post("/todos", data={"title": "forged", "csrf_token": token})
    assert response.status_code == 403
    assert "CSRF token invalid" in response.text
    assert api_todos(client) == []


def test_csrf_token_from_another_cookie_answers_403(settings: Settings, client: TestClient) -> None:
    with TestClient(create_app(settings)) as attacker:
        stolen = page_token(attacker)  # valid, but bound to the attacker's cookie
    client.get("/")
    response = client.post("/todos", data={"title": "forged", "csrf_token": stolen})
    assert response.status_code == 403
    assert api_todos(client) == []


def test_csrf_token_without_cookie_answers_403(client: TestClient) -> None:
    token = page_token(client)
    client.cookies.clear()
    response = client.post("/todos", data={"title": "forged", "csrf_token": token})
    assert response.status_code == 403
    assert api_todos(client) == []


def test_csrf_token_in_header_is_accepted(client: TestClient) -> None:
    token = page_token(client)
    response = client.post(
        "/todos", data={"title": "via header"}, headers={**HTMX, "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert [todo["title"] for todo in api_todos(client)] == ["via header"]


def test_csrf_htmx_refusal_is_retargeted_to_flash(client: TestClient) -> None:
    client.get("/")
    response = client.delete("/todos/1", headers=HTMX)
    assert response.status_code == 403
    assert response.headers["hx-retarget"] == "#flash"
    assert 'role="alert"' in response.text


def test_csrf_protects_toggle_delete_and_chat(client: TestClient) -> None:
    todo_id = client.post("/api/todos", json={"title": "Protected"}).json()["id"]
    client.get("/")
    assert client.post(f"/todos/{todo_id}/toggle").status_code == 403
    assert client.post(f"/todos/{todo_id}/delete").status_code == 403
    assert client.delete(f"/todos/{todo_id}").status_code == 403
    assert client.post("/chat/messages", data={"author": "a", "text": "b"}).status_code == 403
    assert api_todos(client) == [{"id": todo_id, "title": "Protected", "done": False}]
    assert len(client.app.state.chat.history) == 0


def test_csrf_foreign_origin_answers_403_even_with_token(client: TestClient) -> None:
    token = page_token(client)
    response = client.post(
        "/todos",
        data={"title": "forged", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "Origin" in response.text
    assert api_todos(client) == []


def test_csrf_same_host_origin_is_accepted(client: TestClient) -> None:
    token = page_token(client)
    response = client.post(
        "/todos",
        data={"title": "same origin", "csrf_token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_csrf_allowed_origin_is_accepted(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        app_env="development",
        data_dir=tmp_path,
        allowed_origins=["https://todo.example.org"],
    )
    with TestClient(create_app(settings)) as client:
        token = page_token(client)
        response = client.post(
            "/todos",
            data={"title": "proxied", "csrf_token": token},
            headers={"Origin": "https://todo.example.org"},
            follow_redirects=False,
        )
    assert response.status_code == 303


def test_json_api_without_token_still_works(client: TestClient) -> None:
    created = client.post("/api/todos", json={"title": "API"})
    assert created.status_code == 201
    todo_id = created.json()["id"]
    assert client.patch(f"/api/todos/{todo_id}", json={"done": True}).status_code == 200
    assert (
        client.post("/api/chat/messages", json={"author": "bot", "text": "hi"}).status_code == 201
    )
    assert client.delete(f"/api/todos/{todo_id}").status_code == 204


def test_json_api_still_refuses_form_bodies(client: TestClient) -> None:
    response = client.post("/api/todos", data={"title": "form"})
    assert response.status_code == 415


def test_docs_get_their_own_csp_in_development(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "cdn.jsdelivr.net" in response.headers["content-security-policy"]
    assert "cdn.jsdelivr.net" not in client.get("/").headers["content-security-policy"]


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://todo.example.org", "todo.example.org", True),  # default port
        ("http://todo.example.org:80", "todo.example.org", True),
        ("https://todo.example.org", "todo.example.org", False),  # not this scheme
        ("http://127.0.0.1:8080", "127.0.0.1", False),  # a dropped port is port 80
        ("http://127.0.0.1:9999", "127.0.0.1:8080", False),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("https://evil.example", "todo.example.org", False),
        ("null", "todo.example.org", False),  # sandboxed frames, file: pages
    ],
)
def test_csrf_origin_check_compares_scheme_host_and_port(
    client: TestClient, origin: str, host: str, allowed: bool
) -> None:
    token = page_token(client)
    response = client.post(
        "/todos",
        data={"title": "origin check", "csrf_token": token},
        headers={"Origin": origin, "Host": host},
        follow_redirects=False,
    )
    assert response.status_code == (303 if allowed else 403)
