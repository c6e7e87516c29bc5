"""The chat feed: publishing, the SSE stream's format and headers, ending on shutdown."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from sample_app.routes.chat import sse_event


def test_sse_event_format_multiline() -> None:
    assert sse_event("a\nb", "message", 3) == "event: message\nid: 3\ndata: a\ndata: b\n\n"


def test_post_message_validates_and_publishes(client: TestClient) -> None:
    bad = client.post("/api/chat/messages", json={"author": "", "text": "hi"})
    assert bad.status_code == 422
    good = client.post("/api/chat/messages", json={"author": "ana", "text": " hi "})
    assert good.status_code == 201
    assert good.json()["text"] == "hi"
    assert [m.text for m in client.app.state.chat.history] == ["hi"]


def test_stream_delivers_history_and_ends_on_shutdown(client: TestClient) -> None:
    client.post("/api/chat/messages", json={"author": "ana", "text": "before"})
    with client.stream("GET", "/chat/stream", params={"ping": 0.1}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        events = []
        for line in lines:
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                if len(events) == 1:
                    assert json.loads(events[0])["text"] == "before"
                    client.app.state.lifecycle.begin_draining()
            if line == "event: bye":
                break
        rest = list(lines)  # the server closes the stream after the farewell
    assert events[0].startswith("{")
    assert rest[0] == "data: server shutting down"
