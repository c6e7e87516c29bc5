"""The load generator against a real (in-process) HTTP server and a closed port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from opslab.load import MAX_REQUESTS, LoadRunner, run_load
from opslab.procs import free_port


def test_run_load_counts_outcomes_by_status_class(http_server: str) -> None:
    result = run_load(f"{http_server}/cycle", requests=30, concurrency=4)

    assert result.counts == {"2xx": 10, "3xx": 0, "4xx": 10, "5xx": 10, "error": 0}
    assert result.total == 30
    assert result.header_counts() == {"in-process": 30}


def test_run_load_counts_connection_errors_when_nothing_listens() -> None:
    result = run_load(f"http://127.0.0.1:{free_port()}/", requests=5, concurrency=2)

    assert result.counts["error"] == 5
    assert result.errors() == {"ConnectError": 5}
    assert all(record.status is None for record in result.records)


def test_run_load_with_client_and_path_records_header(http_server: str) -> None:
    with httpx.Client(base_url=http_server) as client:
        result = run_load(client, path="/ok", requests=6, concurrency=3, header="Content-Type")

    assert result.counts["2xx"] == 6
    assert result.header_counts() == {"application/json": 6}


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/", "http://example.com/", "http://192.168.1.10:8000/api"]
)
def test_run_load_refuses_non_loopback_targets(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_load(url, requests=1)


@pytest.mark.parametrize(
    "bounds",
    [{}, {"requests": MAX_REQUESTS + 1}, {"duration": 10_000.0}, {"requests": 0}],
)
def test_run_load_refuses_unbounded_or_oversized_runs(
    http_server: str, bounds: dict[str, float]
) -> None:
    with pytest.raises(ValueError, match=r"requests|duration"):
        run_load(http_server, **bounds)  # type: ignore[arg-type]


def test_run_load_duration_stops_on_time(http_server: str) -> None:
    started = time.monotonic()
    result = run_load(f"{http_server}/ok", duration=0.5, concurrency=2)

    assert 0.5 <= time.monotonic() - started < 2.5
    assert result.counts["2xx"] > 0


def test_run_load_rate_limits_requests(http_server: str) -> None:
    result = run_load(f"{http_server}/ok", duration=1.0, rate=10, concurrency=4)

    assert 8 <= result.total <= 12
    starts = [record.start for record in result.records]
    assert max(starts) >= 0.8  # spread over the second, not a burst


def test_run_load_with_progress_bar_completes(
    http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_load(f"{http_server}/ok", requests=5, progress=True)

    assert result.counts["2xx"] == 5
    assert "5/5" in capsys.readouterr().err


def test_load_runner_sends_load_until_stopped(http_server: str) -> None:
    with LoadRunner(f"{http_server}/ok", rate=50, concurrency=2) as runner:
        time.sleep(0.5)
        assert runner.running
        so_far = runner.snapshot().total
        assert so_far > 0
    result = runner.result

    assert not runner.running
    assert result.total >= so_far
    assert result.counts["2xx"] == result.total
    assert result.elapsed < 2


def test_load_runner_refuses_non_loopback_target() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoadRunner("http://203.0.113.5/")


@pytest.fixture
def drops_first_request() -> Iterator[str]:
    """A server that reads the first request and closes without answering, like a reloading
    nginx closing an idle keep-alive connection; it answers every later request."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def serve() -> None:
        for n in range(2):
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                with connection:
                    connection.recv(65536)
                    if n:
                        connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()
    thread.join(5)


def test_run_load_records_a_request_the_server_closed_unanswered(drops_first_request: str) -> None:
    result = run_load(drops_first_request, requests=1, concurrency=1)

    assert result.errors() == {"RemoteProtocolError": 1}
    assert result.retried == 0


def test_run_load_retry_closed_sends_it_again_once(drops_first_request: str) -> None:
    result = run_load(drops_first_request, requests=1, concurrency=1, retry_closed=True)

    assert result.counts["2xx"] == 1
    assert result.retried == 1
    assert result.to_dataframe()["retried"].tolist() == [True]


def test_retry_closed_refuses_non_idempotent_methods(http_server: str) -> None:
    with pytest.raises(ValueError, match="idempotent"):
        LoadRunner(http_server, method="POST", retry_closed=True)
