"""The app without its SIGTERM hook: open SSE streams only hear of shutdown too late.

The real app chains a handler in front of uvicorn's (sample_app/lifecycle.py) that flips
readiness to 503 and tells streams to end the moment SIGTERM arrives. Without it, the
only shutdown signal the app gets is the lifespan shutdown, which uvicorn runs *after*
every connection has closed: an open stream keeps uvicorn waiting until
SHUTDOWN_TIMEOUT cancels it (uvicorn #451). This is the common version of the code.
"""

from __future__ import annotations

import asyncio

from sample_app.lifecycle import Lifecycle


def _remember_loop_only(self: Lifecycle) -> None:
    """Keep what begin_draining() needs, install no signal handler."""
    self._loop = asyncio.get_running_loop()


def apply() -> None:
    """Replace the signal hook with a no-op (streams and readiness then ignore SIGTERM)."""
    Lifecycle.install_signal_hooks = _remember_loop_only  # type: ignore[method-assign]
