"""The bench's ceiling: the smallest ASGI app, served by the same uvicorn as the sample app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

BODY = b"hello"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Answer every HTTP request with 200 "hello": no routing, no middleware, no database."""
    if scope["type"] != "http":
        return  # lifespan: nothing to start or stop
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
