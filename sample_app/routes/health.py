"""Liveness, readiness and build identity."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sample_app.deps import LifecycleDep

router = APIRouter(tags=["health"])


# `async def`: these two do no blocking work, and a plain `def` costs each request a hop to
# the thread pool and back (a third of /health's time when it was profiled under load).
@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Draining or database unavailable"}})
def ready(request: Request, lifecycle: LifecycleDep) -> JSONResponse:
    """Readiness: the database answers and the app is not shutting down."""
    if lifecycle.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not request.app.state.db.ping():
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/version")
async def version(request: Request) -> dict[str, str]:
    """The running build: version, git commit, build time and Python version.

    Read once at start-up: the process runs the code it loaded, whatever a deploy has
    since written to disk (and an async handler must not read files per request).
    """
    return request.app.state.build.as_dict()
