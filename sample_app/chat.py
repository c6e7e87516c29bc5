"""An in-process chat room: messages fan out to every open Server-Sent Events stream.

Bounds, because every stream and every queued message is memory an anonymous client
can make the server hold:
- each subscriber holds at most `queue_size` undelivered messages. Slow-reader policy:
  the oldest are dropped and the stream gets a `gap` event saying how many it missed
  (a reader that stops reading costs `queue_size` messages, not everything since);
- at most `max_streams` streams are open, and `max_streams_per_client` per client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from sample_app.fields import non_blank

HISTORY = 50
Author = non_blank(40)
Text = non_blank(500)


class ChatIn(BaseModel):
    """A message to publish."""

    model_config = ConfigDict(extra="forbid")
    author: Author
    text: Text


@dataclass(frozen=True)
class ChatMessage:
    """A published message."""

    id: int
    author: str
    text: str
    at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Gap:
    """`missed` messages were dropped because this subscriber read too slowly."""

    missed: int


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Subscriber:
    queue: deque[ChatMessage]
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    missed: int = 0


class StreamLimitError(Exception):
    """No stream slot: `per_client` tells whether this client's own cap was hit."""

    def __init__(self, per_client: bool) -> None:
        self.per_client = per_client
        super().__init__("too many streams from this client" if per_client else "server full")


class ChatRoom:
    """Keeps recent history and one bounded queue per subscriber (per open stream).

    A room lives in one process: with several workers each has its own room, which
    is why a real deployment would put Redis pub/sub behind this class (REDIS_URL).
    """

    def __init__(
        self, queue_size: int = 100, max_streams: int = 100, max_streams_per_client: int = 5
    ) -> None:
        self.history: deque[ChatMessage] = deque(maxlen=HISTORY)
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        self._subscribers: set[_Subscriber] = set()
        self._streams: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def publish(self, data: ChatIn) -> ChatMessage:
        message = ChatMessage(
            next(self._ids), data.author, data.text, datetime.now(UTC).isoformat()
        )
        self.history.append(message)
        for subscriber in self._subscribers:
            if len(subscriber.queue) == self.queue_size:
                subscriber.missed += 1  # the deque drops its oldest on append
            subscriber.queue.append(message)
            subscriber.ready.set()
        return message

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def queued(self) -> list[int]:
        """Undelivered messages per subscriber (what a slow reader costs)."""
        return [len(subscriber.queue) for subscriber in self._subscribers]

    def open_stream(self, client: str) -> None:
        """Take a stream slot for `client`, or raise StreamLimitError."""
        if self._streams[client] >= self.max_streams_per_client:
            raise StreamLimitError(per_client=True)
        if self._streams.total() >= self.max_streams:
            raise StreamLimitError(per_client=False)
        self._streams[client] += 1

    def close_stream(self, client: str) -> None:
        self._streams[client] -= 1
        if self._streams[client] <= 0:
            del self._streams[client]

    async def subscribe(
        self, stop: asyncio.Event, ping_interval: float
    ) -> AsyncIterator[ChatMessage | Gap | None]:
        """Yields messages (a Gap first if some were dropped), None as a keep-alive tick."""
        subscriber = _Subscriber(deque(maxlen=self.queue_size))
        self._subscribers.add(subscriber)
        try:
            while not stop.is_set():
                if subscriber.missed:
                    missed, subscriber.missed = subscriber.missed, 0
                    yield Gap(missed)
                elif subscriber.queue:
                    yield subscriber.queue.popleft()
                elif await _wait_either(subscriber.ready, stop, ping_interval):
                    subscriber.ready.clear()
                elif not stop.is_set():
                    yield None
        finally:
            self._subscribers.discard(subscriber)


async def _wait_either(ready: asyncio.Event, stop: asyncio.Event, timeout: float) -> bool:
    """Wait for `ready` or `stop` up to `timeout`; True if `ready` was set."""
    waiters = {asyncio.ensure_future(ready.wait()), asyncio.ensure_future(stop.wait())}
    await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    for waiter in waiters:
        waiter.cancel()
    return ready.is_set()
