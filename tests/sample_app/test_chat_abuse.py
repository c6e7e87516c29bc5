"""Attacks on the chat: a reader that stops reading, a flood of streams, a burst of posts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sample_app.chat import ChatIn, ChatMessage, ChatRoom, Gap
from sample_app.config import Settings
from sample_app.main import create_app
from tests.sample_app.live import serve

POSTS = 15_000


def test_slow_reader_queue_stays_bounded() -> None:
    async def scenario() -> tuple[int, object, object]:
        room, stop = ChatRoom(queue_size=100), asyncio.Event()
        stream = room.subscribe(stop, ping_interval=60)
        first = asyncio.ensure_future(anext(stream))  # subscribes, then waits
        await asyncio.sleep(0)
        room.publish(ChatIn(author="a", text="0"))
        await first
        for n in range(POSTS):  # the reader reads nothing more
            room.publish(ChatIn(author="a", text=str(n)))
        queued = max(room.queued())
        after = (await anext(stream), await anext(stream))
        stop.set()
        await stream.aclose()
        return queued, *after

    queued, gap, message = asyncio.run(scenario())
    print(f"slow reader: {queued} messages queued after {POSTS} posts")
    assert queued == 100
    assert gap == Gap(missed=POSTS - 100)  # the reader is told what it lost
    assert isinstance(message, ChatMessage)
    assert message.text == str(POSTS - 100)


@pytest.fixture
def address(tmp_path: Path) -> Iterator[tuple[str, int]]:
    settings = Settings(
        _env_file=None,
        app_env="development",
        data_dir=tmp_path,
        chat_max_streams=6,
        chat_max_streams_per_client=3,
    )
    with serve(create_app(settings)) as where:
        yield where


def _open_stream(stack: ExitStack, address: tuple[str, int], source: str) -> int:
    """Open /chat/stream from `source` (a loopback address); the status it got."""
    conn = stack.enter_context(
        socket.create_connection(address, timeout=5, source_address=(source, 0))
    )
    conn.sendall(b"GET /chat/stream?ping=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return int(conn.recv(4096).split(b"\r\n", 1)[0].split()[1])


def test_stream_flood_refused_past_the_caps(address: tuple[str, int]) -> None:
    with ExitStack() as stack:
        mine = [_open_stream(stack, address, "127.0.0.1") for _ in range(5)]
        others = [_open_stream(stack, address, "127.0.0.2") for _ in range(3)]
        third = _open_stream(stack, address, "127.0.0.3")
    print(f"streams: client 1 {mine}, client 2 {others}, client 3 {third}")
    assert mine == [200, 200, 200, 429, 429]  # per-client cap: 3
    assert others == [200, 200, 200]
    assert third == 503  # overall cap: 6
    time.sleep(0.5)  # the server sees the streams close and frees their slots
    with ExitStack() as stack:
        assert _open_stream(stack, address, "127.0.0.3") == 200


def test_burst_of_chat_posts_gets_429(settings: Settings) -> None:
    settings = settings.model_copy(update={"chat_post_rate": 1.0, "chat_post_burst": 10})
    with TestClient(create_app(settings)) as client:
        codes = [
            client.post("/api/chat/messages", json={"author": "b", "text": str(n)})
            for n in range(30)
        ]
    refused = [r for r in codes if r.status_code == 429]
    print(f"burst: {len(refused)} of {len(codes)} posts refused")
    assert sum(r.status_code == 201 for r in codes) <= 11  # the burst, plus a refill
    assert len(refused) >= 19
    assert int(refused[0].headers["retry-after"]) >= 1


def test_burst_of_chat_form_posts_gets_429(settings: Settings) -> None:
    settings = settings.model_copy(update={"chat_post_rate": 1.0, "chat_post_burst": 5})
    with TestClient(create_app(settings)) as client:
        token = client.get("/chat").text.split('name="csrf_token" value="', 1)[1].split('"')[0]
        form = {"author": "b", "text": "hi", "csrf_token": token}
        codes = [client.post("/chat/messages", data=form).status_code for _ in range(15)]
    assert codes.count(429) >= 9  # the HTML form shares the API's per-client limit
