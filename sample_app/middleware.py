"""Small pure-ASGI middlewares: instance identification, a response deadline, Allow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_app import deadline
from sample_app.lifecycle import Lifecycle
from sample_app.metrics import KNOWN_METHODS

log = logging.getLogger(__name__)


class InstanceHeaderMiddleware:
    """Adds `X-Instance` so a client behind a load balancer can see who answered.

    While the instance drains (after SIGTERM), or while `handover_file` exists (a deploy
    switched traffic to another instance), every response also says `Connection: close`:
    a proxy then drops its kept-alive connection right after the answer, instead of
    sending more requests here, or sending one on a connection the server is about to
    close (a request lost in that race is a 502 for a POST, which nginx never resends).
    """

    def __init__(
        self,
        app: ASGIApp,
        instance_id: str,
        lifecycle: Lifecycle | None = None,
        handover_file: Path | None = None,
    ) -> None:
        self.app = app
        self.header = (b"x-instance", instance_id.encode())
        self.lifecycle = lifecycle
        self.handover_file = handover_file

    def closing(self) -> bool:
        """Whether a response should end its connection (a stat() is about a microsecond)."""
        if self.lifecycle is not None and self.lifecycle.draining:
            return True
        return self.handover_file is not None and self.handover_file.exists()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), self.header]
                if self.closing():
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


class ResponseDeadlineMiddleware:
    """Answers 504 when a handler has not started its response within `timeout` seconds.

    This is the counterpart of Go's `http.Server.WriteTimeout` for the app's own work;
    a response that has started (an SSE stream) may then run as long as it likes. A
    request whose commit has begun is not cut off: its real answer comes, late (see
    `sample_app.deadline`), so a 504 always means that nothing was written.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if guard.expired:
                return  # the client has its 504
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        guard = deadline.start()  # the handler's task and threads inherit it
        task = asyncio.ensure_future(self.app(scope, receive, send_wrapper))
        try:
            # Wakes when the handler ends or the deadline passes. A response that started
            # and goes on (a stream) is then simply awaited: no second task per request
            # to wake at its start (profiled: each request paid for one).
            await asyncio.wait({task}, timeout=self.timeout)
            if not started and not task.done() and guard.expire():
                await _send_json(send, 504, {"detail": f"no response within {self.timeout:g}s"})
                await _reap(task, self.timeout)
                return
            await task  # propagates the handler's exception, if any
        finally:
            task.cancel()  # no-op when done; stops the handler if we are cancelled ourselves


async def _reap(task: asyncio.Future[None], grace: float) -> None:
    """Let a handler that had its 504 end by itself; cancel it only after `grace` more.

    Cancelling at once left a sync handler's thread committing while FastAPI closed its
    session from another thread (IllegalStateChangeError), and the SQLite write lock
    held. Left alone, its commit is refused (DeadlinePassedError) and its session closes.
    """
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), grace)
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # logged, not raised: the response has been sent
        log.info("a handler ended after its 504: %r", exc)


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class AllowedMethodsMiddleware:
    """OPTIONS answers 204 with every method the path takes; a 405 lists them all too.

    Starlette's router answers for the first route whose path matches, so its `Allow`
    named that route's methods only (GET on /api/todos/{todo_id}, which also takes
    PATCH and DELETE), and OPTIONS was a 405. Worked out only for those two cases.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed = allowed_methods(scope) if scope["method"] == "OPTIONS" else set()
        if allowed and "OPTIONS" not in allowed:
            headers = [(b"allow", _allow(allowed)), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_wrapper(message: Message) -> None:
            refused = message["type"] == "http.response.start" and message["status"] == 405
            if refused and (methods := allowed_methods(scope)):
                MutableHeaders(scope=message)["allow"] = _allow(methods).decode()
            await send(message)

        await self.app(scope, receive, send_wrapper)


def allowed_methods(scope: Scope) -> set[str]:
    """The methods some route of the app takes at this request's path."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
    return {
        method
        for method in KNOWN_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    }


def _allow(methods: set[str]) -> bytes:
    return ", ".join(sorted(methods | {"OPTIONS"})).encode()
