"""Startup, draining and shutdown: what the process does between SIGTERM and exit.

uvicorn, on SIGTERM, stops accepting connections, waits for open requests (up to
SHUTDOWN_TIMEOUT) and only then runs the lifespan shutdown. Two things must happen
*before* that wait, so the app hooks the signal itself:
- readiness flips to 503 at once (a load balancer stops sending new work), and the
  process keeps serving for DRAIN_SECONDS so in-flight routing can settle;
- long-lived SSE streams are told to end, or they would hold the wait until timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SignalHandler = Callable[[int, FrameType | None], object]


class Lifecycle:
    """The app's shutdown state, shared by readiness, SSE streams and the signal hook."""

    def __init__(self, drain_seconds: float = 0.0) -> None:
        self.drain_seconds = drain_seconds
        self.draining = False
        self.shutting_down = asyncio.Event()  # streams wait on this
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, SignalHandler] = {}

    def install_signal_hooks(self) -> None:
        """Chain our handler in front of the server's (uvicorn's) for SIGTERM/SIGINT."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return  # signals only reach the main thread; an embedding server handles them
        for sig in HANDLED_SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._on_signal)

    def restore_signal_hooks(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        forward = self._previous.get(sig)
        if self._loop is None:
            if forward:
                forward(sig, frame)
            return
        if self.draining:
            # uvicorn's supervisor (several workers) sends SIGTERM again within 0.5 s:
            # forwarding it now would cut the drain short. A second ^C still force-quits.
            if forward and sig != signal.SIGTERM:
                forward(sig, frame)
            return
        log.info(
            "received %s: not ready any more, draining for %.1fs",
            signal.Signals(sig).name,
            self.drain_seconds,
        )
        self.begin_draining()
        if forward:
            self._loop.call_soon_threadsafe(
                self._loop.call_later, self.drain_seconds, forward, sig, frame
            )

    def begin_draining(self) -> None:
        """Mark the app not ready and tell open streams to finish (idempotent)."""
        self.draining = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.shutting_down.set)
        else:
            self.shutting_down.set()
