"""Measuring what a proxy does: traced requests, first-event delays, connection reuse.

The helpers behind section 03's measurements (and the tests of the app's nginx template):
each sends real requests through a running nginx on loopback and reports what came back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from opslab.load import check_loopback

if TYPE_CHECKING:  # a circular import at run time: proxy re-exports this module
    from opslab.proxy import AppProxy

TCP_TIME_WAIT = "06"  # the state column of /proc/net/tcp


def trace_client(
    proxy: AppProxy,
    apps: Iterable[Any],
    *,
    source: str = "127.0.0.1",
    forwarded_for: str | None = None,
    path: str = "/health",
) -> dict[str, str | None]:
    """One request from `source` (optionally with its own X-Forwarded-For): who saw whom.

    Returns the address nginx saw, the X-Forwarded-For the client sent and the one nginx
    sent on, and the client address the app's uvicorn logged.
    """
    probe = uuid.uuid4().hex[:12]
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with proxy.client(local_address=source) as client:
        client.get(path, params={"probe": probe}, headers=headers).raise_for_status()
    entry = proxy.log_entry(probe)
    return {
        "nginx saw": entry["remote_addr"],
        "client sent XFF": entry["xff_in"],
        "nginx sent XFF": entry["xff_out"],
        "app saw": client_seen_by_app(apps, probe),
    }


def summarize(response: httpx.Response, *headers: str) -> dict[str, object]:
    """One table row for a response: path, status, protocol, size, who answered, `headers`."""
    row: dict[str, object] = {
        "path": response.request.url.raw_path.decode(),
        "status": response.status_code,
        "protocol": response.http_version,
        "bytes on the wire": response.num_bytes_downloaded,
        "answered by": response.headers.get("x-instance", "nginx"),
    }
    return row | {name: response.headers.get(name, "MISSING") for name in headers}


def first_event_delay(client: httpx.Client, path: str, *, timeout: float = 3.0) -> float | None:
    """Seconds until the first `data:` line of an SSE stream arrives; None if none in time."""
    started = time.monotonic()
    try:
        with client.stream("GET", path, timeout=httpx.Timeout(10.0, read=timeout)) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data:"):
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    return None
    except httpx.ReadTimeout:  # nothing at all arrived for `timeout` seconds
        return None
    return None


def client_seen_by_app(apps: Iterable[Any], marker: str, *, timeout: float = 3.0) -> str | None:
    """The client address in the uvicorn access-log line containing `marker` (any instance)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for app in apps:
            for line in app.log_text().splitlines():
                if marker in line and "uvicorn.access" in line:
                    # '... uvicorn.access: 127.0.0.2:0 - "GET /health?probe=... HTTP/1.1" 200'
                    return line.split("uvicorn.access: ", 1)[1].split(" - ", 1)[0]
        time.sleep(0.05)
    return None


def alternate_requests(
    client: httpx.Client, paths: Sequence[str], *, requests: int
) -> list[tuple[str, float]]:
    """(path, seconds) for `requests` GETs taking turns over `paths`, one at a time.

    Neighbouring requests see the same machine, so whatever else runs on it (two cores,
    shared with the servers) slows every path alike: fair for a side-by-side ratio.
    """
    check_loopback(client.base_url)
    timings = []
    for number in range(requests):
        path = paths[number % len(paths)]
        started = time.perf_counter()
        client.get(path).raise_for_status()
        timings.append((path, time.perf_counter() - started))
    return timings


def new_connections_per_request(
    client: httpx.Client, path: str, ports: Iterable[int], *, requests: int = 50
) -> float | None:
    """TCP connections opened (and closed) to `ports` per GET of `path`; None without /proc."""
    ports = list(ports)
    before = tcp_time_wait(ports)
    if before is None:
        return None
    for _ in range(requests):
        client.get(path).raise_for_status()
    time.sleep(0.1)  # the last connection closes just after its response
    return ((tcp_time_wait(ports) or 0) - before) / requests


def tcp_time_wait(ports: Iterable[int]) -> int | None:
    """TCP sockets in TIME_WAIT to or from these local ports (None where /proc is missing).

    Every closed TCP connection leaves one for a minute: the count grows by one per
    connection that nginx opened to an app and closed again.
    """
    wanted, count = set(ports), 0
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        ends = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
        count += state == TCP_TIME_WAIT and bool(ends & wanted)
    return count
