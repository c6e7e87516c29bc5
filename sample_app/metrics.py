"""Prometheus metrics: request count and latency by route template, plus business metrics.

Every label value is drawn from a fixed set, never copied from the request: the
matched *route template* (`/api/todos/{todo_id}`), never the raw path (one series
per URL would grow without bound); the method from an allow-list (h11, the
default HTTP parser of plain `uvicorn`, accepts any token as a method: a flood of
made-up ones would otherwise make a series each); the status as a valid code.

With several uvicorn workers, set
PROMETHEUS_MULTIPROC_DIR (an empty directory) before start: each worker then writes
its samples to files there and `/metrics` aggregates all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 0.25 s is the latency SLO the course uses: a bucket boundary there makes
# "fraction of requests under the SLO" an exact query rather than an interpolation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"
OTHER = "other"
# RFC 9110 methods plus PATCH (RFC 5789): anything else is counted as "other".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

REQUESTS = Counter("http_requests_total", "HTTP requests handled", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to produce the full response (SSE streams excluded)",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress", "Requests being handled now", multiprocess_mode="livesum"
)
TODOS_CREATED = Counter("todos_created_total", "Todos created (API and UI)")
SSE_STREAMS_OPEN = Gauge(
    "sse_streams_open", "Server-Sent Events streams open now", multiprocess_mode="livesum"
)
CHAT_MESSAGES = Counter("chat_messages_total", "Chat messages published")

# Streams stay open for minutes: their duration would swamp the latency histogram.
UNTIMED_ROUTES = frozenset({"/chat/stream"})


def method_label(method: str) -> str:
    """The method if it is a standard one, else "other"."""
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    """The status code as a label: a valid code (100-599), else "other"."""
    return str(status) if 100 <= status <= 599 else OTHER


def route_label(scope: Scope, request_scope: Scope | None = None) -> str:
    """The matched route's template, or one fixed label for anything unmatched.

    FastAPI records its own routes in `scope["route"]`; plain Starlette routes and
    mounts (`/metrics`, `/static`) are matched here against the app's route table,
    using the scope as it was before routing changed it.
    """
    route = scope.get("route")
    if route is None:
        original = request_scope or scope
        for candidate in getattr(scope.get("app"), "routes", ()):
            if candidate.matches(original)[0] is Match.FULL:
                route = candidate
                break
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    return getattr(route, "path", None) or UNMATCHED_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware (no buffering of streamed bodies) recording every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the response started is a server error
        start = time.perf_counter()
        request_scope = dict(scope)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            IN_PROGRESS.dec()
            route = route_label(scope, request_scope)
            method = method_label(scope["method"])
            REQUESTS.labels(method, route, status_label(status)).inc()
            if route not in UNTIMED_ROUTES:
                LATENCY.labels(method, route).observe(time.perf_counter() - start)


def metrics_registry() -> CollectorRegistry:
    """The process registry, or an aggregate of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of all metrics, for clients in METRICS_ALLOWED_NETWORKS.

    A plain `def`: Starlette runs it in its thread pool, so rendering (or reading a
    multiprocess directory) never stalls the event loop that serves other requests.
    """
    if not client_allowed(request, request.app.state.settings.metrics_allowed_networks):
        return PlainTextResponse("metrics are for the scraper only", status_code=403)
    return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)


def client_allowed(request: Request, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Is the client (as uvicorn reports it, X-Forwarded-For applied) in one of `networks`?"""
    try:
        address = ip_address(request.client.host if request.client else "")
    except ValueError:  # a test client's "testclient", or a Unix socket peer
        return False
    return any(address in network for network in networks)


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
