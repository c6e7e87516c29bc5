"""More concurrent requests than thread-pool tokens must not starve the database pool.

Before `Database.slots`, 128 keep-alive GETs of /api/todos on one worker got 80 answers,
then none: every thread-pool token (40) was held by a thread waiting for a connection,
and every connection (10) by a request waiting for a token to serialize its answer.
"""

from __future__ import annotations

import asyncio

import httpx

from opslab import start_app

CLIENTS = 128  # > anyio's 40 thread-pool tokens + the pool's 10 connections
ROUNDS = 3


async def _hammer(url: str) -> list[int]:
    limits = httpx.Limits(max_connections=CLIENTS)
    timeout = httpx.Timeout(20.0)  # below the pool's 30 s checkout timeout: a stall fails
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one() -> list[int]:
            return [(await client.get("/api/todos")).status_code for _ in range(ROUNDS)]

        results = await asyncio.gather(*(one() for _ in range(CLIENTS)))
    return [code for codes in results for code in codes]


def test_many_concurrent_database_requests_are_all_answered() -> None:
    with start_app(name="t-pool-starvation", workers=1) as app:
        codes = asyncio.run(_hammer(app.url))
    assert codes.count(200) == CLIENTS * ROUNDS, sorted(set(codes))
