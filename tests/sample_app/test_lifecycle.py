"""The app's signal hook: SIGTERM starts a drain that a repeated SIGTERM does not cut short."""

from __future__ import annotations

import asyncio
import signal

from sample_app.lifecycle import Lifecycle


def _forwarded_after(signals: list[int], drain: float, wait: float) -> list[tuple[float, int]]:
    """Send `signals` 0.1 s apart to a draining hook; what reached the server, and when."""
    seen: list[tuple[float, int]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        lifecycle = Lifecycle(drain_seconds=drain)
        lifecycle._loop = loop
        start = loop.time()
        for sig in signal.SIGTERM, signal.SIGINT:
            lifecycle._previous[sig] = lambda s, _f: seen.append((loop.time() - start, s))
        for sig in signals:
            lifecycle._on_signal(sig, None)
            await asyncio.sleep(0.1)
        await asyncio.sleep(wait)

    asyncio.run(scenario())
    return seen


def test_repeated_sigterm_waits_for_the_drain() -> None:
    # uvicorn's supervisor, with several workers, re-sends SIGTERM within 0.5 s.
    seen = _forwarded_after([signal.SIGTERM, signal.SIGTERM], drain=0.5, wait=0.6)

    assert [sig for _, sig in seen] == [signal.SIGTERM]  # was: forwarded twice
    assert seen[0][0] >= 0.45  # was: the second one at 0.1 s ended the drain


def test_second_sigint_still_force_quits_at_once() -> None:
    seen = _forwarded_after([signal.SIGINT, signal.SIGINT], drain=5.0, wait=0.0)

    assert [sig for _, sig in seen] == [signal.SIGINT]
    assert seen[0][0] < 0.5
