"""Development-only endpoints; not mounted in staging or production."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get("/slow")
async def slow(seconds: float = Query(1.0, ge=0, le=60)) -> dict[str, float]:
    """Answer after `seconds` (for the graceful-shutdown lessons)."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}
