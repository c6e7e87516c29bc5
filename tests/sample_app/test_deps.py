"""Dependencies that do no blocking work run on the event loop, not in the thread pool."""

from __future__ import annotations

import inspect

from sample_app import deps
from sample_app.routes import health


def test_non_blocking_dependencies_and_handlers_are_async() -> None:
    # A plain `def` is a hop to the thread pool and back per request (profiled: more than
    # /api/todos' own query); these do attribute reads only, or no I/O until later.
    for function in (deps.get_app_settings, deps.get_lifecycle, health.health, health.version):
        assert inspect.iscoroutinefunction(function), function.__name__
    assert inspect.isasyncgenfunction(deps.get_session)
