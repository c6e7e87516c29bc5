"""The JSON todo API: CRUD, validation (422), JSON-only bodies (415), persistence."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sample_app.config import Settings
from sample_app.main import create_app


def _titles(client: TestClient) -> list[str]:
    return [todo["title"] for todo in client.get("/api/todos").json()]


def test_create_todo_returns_201_and_trimmed_title(client: TestClient) -> None:
    response = client.post("/api/todos", json={"title": "  ship it  "})
    assert response.status_code == 201
    assert response.json() == {"id": 1, "title": "ship it", "done": False}


def test_read_todo_not_found(client: TestClient) -> None:
    response = client.get("/api/todos/42")
    assert response.status_code == 404
    assert response.json() == {"detail": "todo 42 not found"}


def test_read_todo_bad_id_is_422(client: TestClient) -> None:
    assert client.get("/api/todos/abc").status_code == 422


def test_update_todo_marks_done(client: TestClient) -> None:
    todo_id = client.post("/api/todos", json={"title": "a"}).json()["id"]
    response = client.patch(f"/api/todos/{todo_id}", json={"done": True})
    assert response.json() == {"id": todo_id, "title": "a", "done": True}
    assert client.get(f"/api/todos/{todo_id}").json()["done"] is True


def test_delete_todo_removes_it(client: TestClient) -> None:
    todo_id = client.post("/api/todos", json={"title": "a"}).json()["id"]
    assert client.delete(f"/api/todos/{todo_id}").status_code == 204
    assert client.get(f"/api/todos/{todo_id}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"title": ""}, {"title": "   "}, {"title": "x" * 201}, {}, {"title": "a", "owner": "b"}],
    ids=["empty", "blank", "too-long", "missing", "unknown-field"],
)
def test_create_todo_invalid_is_422_and_writes_nothing(client: TestClient, body: dict) -> None:
    client.post("/api/todos", json={"title": "keep me"})
    response = client.post("/api/todos", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert _titles(client) == ["keep me"]


def test_update_todo_invalid_keeps_old_value(client: TestClient) -> None:
    todo_id = client.post("/api/todos", json={"title": "keep me"}).json()["id"]
    response = client.patch(f"/api/todos/{todo_id}", json={"title": "x" * 201, "done": True})
    assert response.status_code == 422
    assert client.get(f"/api/todos/{todo_id}").json() == {
        "id": todo_id,
        "title": "keep me",
        "done": False,
    }


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_create_todo_non_json_body_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/todos", content=b'{"title": "x"}', headers=headers)
    assert response.status_code == 415
    assert _titles(client) == []


def test_todos_survive_app_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as first:
        first.post("/api/todos", json={"title": "persisted"})
    with TestClient(create_app(settings)) as second:
        assert _titles(second) == ["persisted"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_todo_id_beyond_64_bits_is_422(client: TestClient, method: str) -> None:
    body = {"json": {"done": True}} if method == "PATCH" else {}
    response = client.request(method, f"/api/todos/{2**63}", **body)
    assert response.status_code == 422  # was a 500 (OverflowError from SQLite)


def test_update_todo_done_must_be_a_real_boolean(client: TestClient) -> None:
    client.post("/api/todos", json={"title": "strict"})
    assert client.patch("/api/todos/1", json={"done": 0}).status_code == 422
    assert client.patch("/api/todos/1", json={"done": "yes"}).status_code == 422
    assert client.patch("/api/todos/1", json={"done": True}).json()["done"] is True


def test_options_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.options("/api/todos/1")
    assert response.status_code == 204
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "PATCH", "DELETE", "OPTIONS"} <= allowed


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.put("/api/todos/1", json={"title": "x"})
    assert response.status_code == 405
    assert {"GET", "PATCH", "DELETE"} <= {m.strip() for m in response.headers["allow"].split(",")}


def test_body_not_utf8_is_422(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/api/todos", content=b'{"title": "\xff\xfe"}', headers=headers)
    assert response.status_code == 422  # documented, like any body that is not JSON


def test_openapi_documents_the_statuses_returned(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for method in ("get", "patch", "delete"):
        assert {"404", "422"} <= set(paths["/api/todos/{todo_id}"][method]["responses"])
    for path, method in (("/api/todos", "post"), ("/api/todos/{todo_id}", "patch")):
        assert {"413", "415", "422"} <= set(paths[path][method]["responses"])
    assert {"413", "415", "422", "429"} <= set(paths["/api/chat/messages"]["post"]["responses"])
    assert {"429", "503"} <= set(paths["/chat/stream"]["get"]["responses"])


def test_a_list_answer_is_bounded_and_pages_with_after(client: TestClient) -> None:
    for n in range(7):
        client.post("/api/todos", json={"title": f"t{n}"})

    first = client.get("/api/todos", params={"limit": 3})
    rest = client.get("/api/todos", params={"limit": 3, "after": first.json()[-1]["id"]})

    assert [t["title"] for t in first.json()] == ["t0", "t1", "t2"]
    assert first.headers["link"].endswith('limit=3>; rel="next"')
    assert [t["title"] for t in rest.json()] == ["t3", "t4", "t5"]
    assert client.get("/api/todos", params={"limit": 501}).status_code == 422


def test_the_page_shows_a_bounded_list_and_says_how_many_it_left_out(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sample_app import todos

    monkeypatch.setattr(todos, "PAGE_MAX", 3)
    for n in range(5):
        client.post("/api/todos", json={"title": f"item-{n}"})

    page = client.get("/").text

    assert "item-2" in page
    assert "item-3" not in page
    assert "2 more not shown" in page
