"""The live chat feed over Server-Sent Events: `/chat/stream` and `/api/chat/messages`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse

from sample_app.chat import ChatIn, ChatMessage, ChatRoom
from sample_app.deps import LifecycleDep
from sample_app.lifecycle import Lifecycle
from sample_app.metrics import CHAT_MESSAGES, SSE_STREAMS_OPEN
from sample_app.routes.todos_api import require_json

PING_SECONDS = 15.0
router = APIRouter(tags=["chat"])


def get_room(request: Request) -> ChatRoom:
    return request.app.state.chat


def sse_event(data: str, event: str | None = None, event_id: int | None = None) -> str:
    """One event in the text/event-stream format."""
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    return head + "".join(f"data: {line}\n" for line in data.splitlines() or [""]) + "\n"


async def _events(room: ChatRoom, lifecycle: Lifecycle, ping: float) -> AsyncIterator[str]:
    SSE_STREAMS_OPEN.inc()
    try:
        yield "retry: 2000\n\n"  # reconnect delay for EventSource after the server goes
        for message in list(room.history)[-10:]:
            yield sse_event(message.to_json(), "message", message.id)
        async for message in room.subscribe(lifecycle.shutting_down, ping):
            # A comment line keeps proxies and clients from timing out an idle stream.
            yield (
                ": ping\n\n"
                if message is None
                else sse_event(message.to_json(), "message", message.id)
            )
        yield sse_event("server shutting down", "bye")
    finally:
        SSE_STREAMS_OPEN.dec()


@router.get("/chat/stream", response_class=StreamingResponse)
async def stream(
    request: Request,
    lifecycle: LifecycleDep,
    ping: float = Query(PING_SECONDS, ge=0.1, le=60, description="Seconds between pings"),
) -> StreamingResponse:
    """Server-Sent Events: recent and new chat messages, then a ping every `ping` seconds."""
    headers = {
        "Cache-Control": "no-cache",
        # nginx reads this from the *response* and stops buffering the stream.
        "X-Accel-Buffering": "no",
    }
    return StreamingResponse(
        _events(get_room(request), lifecycle, ping),
        media_type="text/event-stream",
        headers=headers,
    )


@router.post(
    "/api/chat/messages",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_json)],
)
async def post_message(data: ChatIn, room: ChatRoom = Depends(get_room)) -> dict[str, object]:
    """Publish a chat message to every open stream (async: the room lives on the event loop)."""
    message: ChatMessage = room.publish(data)
    CHAT_MESSAGES.inc()
    return {"id": message.id, "author": message.author, "text": message.text, "at": message.at}
