"""An in-process chat room: messages fan out to every open Server-Sent Events stream."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

HISTORY = 50


class ChatIn(BaseModel):
    """A message to publish."""

    model_config = ConfigDict(extra="forbid")
    author: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


@dataclass(frozen=True)
class ChatMessage:
    """A published message."""

    id: int
    author: str
    text: str
    at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class ChatRoom:
    """Keeps recent history and one queue per subscriber (per open stream).

    A room lives in one process: with several workers each has its own room, which
    is why a real deployment would put Redis pub/sub behind this class (REDIS_URL).
    """

    def __init__(self) -> None:
        self.history: deque[ChatMessage] = deque(maxlen=HISTORY)
        self._subscribers: set[asyncio.Queue[ChatMessage]] = set()
        self._ids = itertools.count(1)

    def publish(self, data: ChatIn) -> ChatMessage:
        message = ChatMessage(
            next(self._ids), data.author, data.text, datetime.now(UTC).isoformat()
        )
        self.history.append(message)
        for queue in self._subscribers:
            queue.put_nowait(message)
        return message

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def subscribe(
        self, stop: asyncio.Event, ping_interval: float
    ) -> AsyncIterator[ChatMessage | None]:
        """Yields messages as they arrive, None as a keep-alive tick; ends when `stop` is set."""
        queue: asyncio.Queue[ChatMessage] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {getter, stopper}, timeout=ping_interval, return_when="FIRST_COMPLETED"
                )
                stopper.cancel()
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
                    if not stop.is_set():
                        yield None
        finally:
            self._subscribers.discard(queue)
