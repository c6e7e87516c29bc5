"""The application factory: wires settings, database, middleware and routes together."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sample_app.buildinfo import get_build_info
from sample_app.chat import ChatRoom
from sample_app.config import ConfigError, Settings, get_settings
from sample_app.db import Database
from sample_app.errors import install_error_handlers
from sample_app.lifecycle import Lifecycle
from sample_app.metrics import MetricsMiddleware, mark_worker_dead, metrics_endpoint
from sample_app.middleware import (
    AllowedMethodsMiddleware,
    InstanceHeaderMiddleware,
    ResponseDeadlineMiddleware,
)
from sample_app.ratelimit import RateLimiter
from sample_app.routes import chat, debug, health, todos_api, ui
from sample_app.security import add_security

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app; raises ConfigError when the settings must not run."""
    settings = settings or get_settings()
    if problems := settings.problems():
        raise ConfigError(problems, settings.app_env.value)
    database = Database(settings)
    lifecycle = Lifecycle(settings.drain_seconds)
    build = get_build_info()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        database.create_tables()
        lifecycle.install_signal_hooks()
        log.info("app ready: version=%s env=%s", build.version, settings.app_env.value)
        yield
        lifecycle.begin_draining()
        lifecycle.restore_signal_hooks()
        database.dispose()
        # This worker's live gauges (requests in progress, open streams) would otherwise
        # be summed into /metrics by the other workers forever after it exits.
        mark_worker_dead(os.getpid())

    app = FastAPI(
        title="Ops Lab todo app",
        version=build.version,
        lifespan=lifespan,
        docs_url="/docs" if settings.is_development else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.is_development else None,
    )
    app.state.settings = settings
    app.state.build = build
    app.state.db = database
    app.state.lifecycle = lifecycle
    app.state.chat = ChatRoom(
        settings.chat_queue_size, settings.chat_max_streams, settings.chat_max_streams_per_client
    )
    app.state.chat_posts = RateLimiter(settings.chat_post_rate, settings.chat_post_burst)

    # Jinja re-reads each template's mtime on every render unless told not to: only worth
    # it while someone edits them (profiled: a sixth of the HTML page's time in production).
    ui.templates.env.auto_reload = settings.is_development
    for router in (health.router, todos_api.router, chat.router, ui.router):
        app.include_router(router)
    if settings.is_development:
        app.include_router(debug.router)
    if settings.metrics_enabled:
        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Added last runs first: metrics see every response, including the deadline's 504.
    install_error_handlers(app)
    app.add_middleware(AllowedMethodsMiddleware)
    app.add_middleware(ResponseDeadlineMiddleware, timeout=settings.request_timeout)
    add_security(app, settings)
    instance = settings.instance_id or f"{socket.gethostname()}:{settings.port}"
    app.add_middleware(
        InstanceHeaderMiddleware,
        instance_id=instance,
        lifecycle=lifecycle,
        handover_file=settings.handover_file,
    )
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware)
    return app
