"""Liveness, readiness and build identity."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sample_app.buildinfo import get_build_info
from sample_app.deps import LifecycleDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
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
def version() -> dict[str, str]:
    """The running build: version, git commit, build time and Python version."""
    return get_build_info().as_dict()
