"""The response deadline, shared by the middleware that answers 504 and the database.

A sync handler runs in a worker thread that cancelling its task cannot stop: it used
to commit after the client had its 504, so a retried POST created the todo twice. Now
a commit first claims the request's deadline; whichever comes first wins. Either the
commit claims it (the middleware then waits for the real answer) or the deadline
expires it (the commit is refused and rolled back): a 504 means nothing was written.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

_current: ContextVar[Deadline | None] = ContextVar("response_deadline", default=None)


class DeadlinePassedError(Exception):
    """The client has been told 504; this request must not write anything."""


class Deadline:
    """One request's race between its commit and its 504."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"  # -> "committing" (first commit) or "expired" (the 504)

    def claim(self) -> None:
        """Called before a commit; raises DeadlinePassedError when the 504 has been sent."""
        with self._lock:
            if self._state == "expired":
                raise DeadlinePassedError("the response deadline passed; nothing was written")
            self._state = "committing"

    @property
    def expired(self) -> bool:
        return self._state == "expired"

    def expire(self) -> bool:
        """True when the 504 may be sent: no commit has begun and none will."""
        with self._lock:
            if self._state == "open":
                self._state = "expired"
            return self._state == "expired"


def start() -> Deadline:
    """A deadline for the request this context (and the tasks it starts) serves."""
    deadline = Deadline()
    _current.set(deadline)
    return deadline


def claim_current() -> None:
    """Claim the running request's deadline, if it has one (CLI and tests have none)."""
    if (deadline := _current.get()) is not None:
        deadline.claim()
