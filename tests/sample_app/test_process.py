"""The app as a real uvicorn process: SIGTERM drains, SIGKILL loses, streams end, workers."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opslab.app import AppServer, start_app

pytestmark = pytest.mark.slow


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _slow_get(app: AppServer, seconds: float) -> httpx.Response:
    return httpx.get(f"{app.url}/debug/slow", params={"seconds": seconds}, timeout=15)


def _wait_in_flight(app: AppServer, count: int) -> None:
    """Until the app reports `count` requests in progress (the /metrics call included)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(f"{app.url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            if family.name == "http_requests_in_progress" and family.samples[0].value > count:
                return
        time.sleep(0.05)
    raise AssertionError(f"never saw {count} requests in flight")


def test_sigterm_lets_slow_request_finish_and_ready_turns_503(pool: ThreadPoolExecutor) -> None:
    with start_app(name="test-sigterm", drain_seconds=1.0, shutdown_timeout=5) as app:
        slow = pool.submit(_slow_get, app, 2.0)
        _wait_in_flight(app, 1)
        app.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(f"{app.url}/ready", timeout=5).status_code == 503
        assert slow.result().status_code == 200
        app.wait(timeout=10)
        log = app.log_text()
    assert "received SIGTERM: not ready any more" in log
    assert "database connection pool closed" in log


def test_sigkill_loses_in_flight_request(pool: ThreadPoolExecutor) -> None:
    with start_app(name="test-sigkill") as app:
        slow = pool.submit(_slow_get, app, 2.0)
        _wait_in_flight(app, 1)
        app.send_signal(signal.SIGKILL)
        with pytest.raises(httpx.TransportError):
            slow.result()
        app.wait(timeout=10)
        assert "database connection pool closed" not in app.log_text()


def test_open_sse_stream_does_not_hold_shutdown() -> None:
    with start_app(name="test-sse", shutdown_timeout=10) as app:
        lines: list[str] = []
        with httpx.stream("GET", f"{app.url}/chat/stream", timeout=15) as response:
            stream = response.iter_lines()
            lines.append(next(stream))
            started = time.monotonic()
            app.send_signal(signal.SIGTERM)
            lines.extend(stream)
        app.wait(timeout=10)
        elapsed = time.monotonic() - started
    assert "event: bye" in lines
    assert elapsed < 3, f"shutdown took {elapsed:.1f}s with a stream open"


def test_multiprocess_metrics_count_every_worker() -> None:
    with start_app(name="test-workers", workers=2, multiprocess_metrics=True) as app:
        for _ in range(30):  # a new connection each time, so both workers get some
            httpx.get(f"{app.url}/metrics", timeout=5)
        text = httpx.get(f"{app.url}/metrics", timeout=5).text
    total = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels["route"] == "/metrics"
    )
    # Counted when a response ends: the last scrape sees the 30 before it, whichever
    # worker served each; one worker's registry alone would see about half.
    assert total == 30


def test_stopped_workers_leave_no_live_gauges() -> None:
    app = start_app(name="test-dead-workers", workers=2, multiprocess_metrics=True)
    with app:
        httpx.get(f"{app.url}/health", timeout=5)
        metrics_dir = Path(app.env["PROMETHEUS_MULTIPROC_DIR"])
        assert list(metrics_dir.rglob("gauge_livesum_*.db"))  # the workers are counting
    # Files left behind are summed into /metrics by the next workers over this directory.
    assert list(metrics_dir.rglob("gauge_livesum_*.db")) == []  # was: left behind
