"""Metrics labelled by the raw URL path: one time series per URL (the Go chapter's mistake).

`/api/todos/1`, `/api/todos/2`, ... each become their own `route` label value, so the
number of series grows with every id a client asks for: unbounded cardinality. The app
labels by the matched route template instead (`sample_app.metrics.route_label`).
"""

from __future__ import annotations

from starlette.types import Scope


def raw_path_label(scope: Scope, request_scope: Scope | None = None) -> str:
    """The request's path exactly as the client sent it."""
    return str((request_scope or scope)["path"])


def apply() -> None:
    """Make the app's metrics middleware label requests by raw path."""
    import sample_app.metrics

    sample_app.metrics.route_label = raw_path_label
