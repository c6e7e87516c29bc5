"""The shutdown variant holds shutdown with an open stream; the real app does not."""

from __future__ import annotations

from opslab import start_app
from opslab.timeline import stream_shutdown
from opslab.variants import available

TIMEOUT = 2  # SHUTDOWN_TIMEOUT, seconds (uvicorn takes whole seconds)


def test_available_lists_shutdown_variant() -> None:
    assert "shutdown_no_hook" in available()


def test_stream_ignoring_shutdown_holds_exit_until_timeout() -> None:
    with start_app(
        name="test-no-hook", variant="shutdown_no_hook", shutdown_timeout=TIMEOUT
    ) as app:
        result = stream_shutdown(app, app.url, wait=10)
    assert result.exit_s is not None
    assert TIMEOUT <= result.exit_s < TIMEOUT + 3
    assert not result.said_bye


def test_real_app_ends_streams_and_exits_at_once() -> None:
    with start_app(name="test-hook", shutdown_timeout=TIMEOUT) as app:
        result = stream_shutdown(app, app.url, wait=10)
    assert result.exit_s is not None
    assert result.exit_s < TIMEOUT / 2
    assert result.said_bye
    assert result.stream_ended_s is not None
    assert result.stream_ended_s < result.exit_s + 0.1
