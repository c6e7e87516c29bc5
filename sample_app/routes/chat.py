"""The live chat feed over Server-Sent Events: `/chat/stream` and `/api/chat/messages`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sample_app.chat import ChatIn, ChatMessage, ChatRoom, Gap, StreamLimitError
from sample_app.deps import LifecycleDep, limit_chat_posts
from sample_app.lifecycle import Lifecycle
from sample_app.metrics import CHAT_MESSAGES, SSE_STREAMS_OPEN
from sample_app.ratelimit import client_key
from sample_app.routes.todos_api import BODY_ERRORS, require_json

PING_SECONDS = 15.0
router = APIRouter(tags=["chat"])


def get_room(request: Request) -> ChatRoom:
    return request.app.state.chat


class _SlotStreamingResponse(StreamingResponse):
    """A stream that gives its slot back however it ends (even if never iterated)."""

    def __init__(self, *args: object, release: Callable[[], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


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
            if message is None:  # a comment line keeps proxies and clients from timing out
                yield ": ping\n\n"
            elif isinstance(message, Gap):  # this reader was too slow: some were dropped
                yield sse_event(f'{{"missed": {message.missed}}}', "gap")
            else:
                yield sse_event(message.to_json(), "message", message.id)
        yield sse_event("server shutting down", "bye")
    finally:
        SSE_STREAMS_OPEN.dec()


STREAM_REFUSED = {
    429: {"description": "This client has CHAT_MAX_STREAMS_PER_CLIENT streams open"},
    503: {"description": "CHAT_MAX_STREAMS streams are open"},
}


@router.get("/chat/stream", response_class=StreamingResponse, responses=STREAM_REFUSED)
async def stream(
    request: Request,
    lifecycle: LifecycleDep,
    ping: float = Query(PING_SECONDS, ge=0.1, le=60, description="Seconds between pings"),
) -> StreamingResponse:
    """Server-Sent Events: recent and new chat messages, then a ping every `ping` seconds."""
    room, client = get_room(request), client_key(request)
    try:
        room.open_stream(client)
    except StreamLimitError as full:
        code = status.HTTP_429_TOO_MANY_REQUESTS if full.per_client else 503
        raise HTTPException(code, str(full), headers={"Retry-After": "5"}) from None
    headers = {
        "Cache-Control": "no-cache",
        # nginx reads this from the *response* and stops buffering the stream.
        "X-Accel-Buffering": "no",
    }
    return _SlotStreamingResponse(
        _events(room, lifecycle, ping),
        media_type="text/event-stream",
        headers=headers,
        release=lambda: room.close_stream(client),
    )


@router.post(
    "/api/chat/messages",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_json), Depends(limit_chat_posts)],
    responses={**BODY_ERRORS, 429: {"description": "Posting faster than CHAT_POST_RATE"}},
)
async def post_message(data: ChatIn, room: ChatRoom = Depends(get_room)) -> dict[str, object]:
    """Publish a chat message to every open stream (async: the room lives on the event loop)."""
    message: ChatMessage = room.publish(data)
    CHAT_MESSAGES.inc()
    return {"id": message.id, "author": message.author, "text": message.text, "at": message.at}
