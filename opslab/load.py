"""A bounded HTTP load generator for loopback servers, usable inside Jupyter.

Threads with blocking httpx clients: Jupyter already runs an event loop in the main
thread, so asyncio-based load would need its own loop thread anyway. Every run is bounded
(a request count or a duration, both capped) and only loopback addresses are accepted:
the course never sends load to a machine it does not own.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from opslab.loadresult import LoadResult, RequestRecord, outcome_of

log = logging.getLogger(__name__)

MAX_REQUESTS = 100_000
MAX_DURATION = 600.0
MAX_CONCURRENCY = 64


class HasUrl(Protocol):
    """Anything with a base URL, such as an AppServer or Nginx."""

    @property
    def url(self) -> str: ...


Target = str | httpx.Client | HasUrl


def check_loopback(url: str | httpx.URL) -> None:
    """Refuse any target that is not this machine's loopback interface."""
    host = httpx.URL(str(url)).host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"load is only sent to loopback addresses (127.0.0.1, ::1), not {host!r}")


def _check_bounds(requests: int | None, duration: float | None, concurrency: int) -> None:
    if requests is None and duration is None:
        raise ValueError("give requests= or duration=: unbounded load is refused")
    if requests is not None and not 0 < requests <= MAX_REQUESTS:
        raise ValueError(f"requests must be between 1 and {MAX_REQUESTS}")
    if duration is not None and not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be between 0 and {MAX_DURATION:g} seconds")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")


def _resolve_url(target: Target, path: str) -> str:
    """The absolute URL to load: a client's base_url, a server's url, or a URL string."""
    if isinstance(target, httpx.Client):
        base = target.base_url
    else:
        base = httpx.URL(target if isinstance(target, str) else target.url)
    return str(base.join(path)) if path else str(base)


def _progress_bar(total: int | None, url: str) -> AbstractContextManager[Any]:
    # In a notebook the bar ends as one summary line (opslab.progress): no frozen "0%".
    from opslab.progress import progress_bar

    return progress_bar(total, f"load {url}", unit="req")


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def closed_before_answer(exc: httpx.HTTPError) -> bool:
    """The server closed a kept-alive connection as the request went out: nothing was answered.

    nginx does this to idle connections when it reloads (old workers close them). RFC 9112
    section 9.3.1 lets a client retry an idempotent request then, and browsers do.
    """
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)


class _Engine:
    """Worker threads sending requests until the count, the duration or a stop is reached."""

    def __init__(
        self,
        target: Target,
        *,
        path: str,
        requests: int | None,
        duration: float | None,
        concurrency: int,
        rate: float | None,
        request: Mapping[str, Any],
        timeout: float,
        header: str | None,
        retry_closed: bool = False,
    ) -> None:
        _check_bounds(requests, duration, concurrency)
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (requests per second)")
        self.shared = target if isinstance(target, httpx.Client) else None
        self.url = _resolve_url(target, path)
        check_loopback(self.url)
        self.requests, self.duration, self.rate = requests, duration, rate
        self.concurrency, self.request = concurrency, dict(request)
        self.timeout, self.header = timeout, header
        idempotent = self.request["method"] in IDEMPOTENT
        if retry_closed and not idempotent:
            raise ValueError(f"retry_closed is only for idempotent methods {sorted(IDEMPOTENT)}")
        self.retry_closed = retry_closed
        self.records: list[RequestRecord] = []
        self.stop_event = threading.Event()
        self.on_record: Callable[[RequestRecord], None] | None = None
        self._lock = threading.Lock()
        self._issued = 0
        self._t0 = 0.0
        self._t_end: float | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads."""
        self._t0 = time.monotonic()
        self._threads = [
            threading.Thread(target=self._worker, name=f"opslab-load-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers; True once all have finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(thread.is_alive() for thread in self._threads)
        if done and self._t_end is None:
            self._t_end = time.monotonic()
        return done

    def run(self, *, progress: bool) -> LoadResult:
        """Block until the run is over; an interrupt (Ctrl-C, Jupyter stop) stops the workers."""
        with _progress_bar(self.requests, self.url) if progress else nullcontext() as bar:
            if bar is not None:
                self.on_record = lambda _record: bar.update(1)
            self.start()
            try:
                while not self.join(timeout=0.2):  # short joins keep the cell interruptible
                    pass
            except KeyboardInterrupt:
                self.stop_event.set()
                self.join()
                raise
        return self.result()

    def result(self) -> LoadResult:
        """The records so far, in start order."""
        with self._lock:
            records = sorted(self.records, key=lambda r: r.start)
        end = self._t_end if self._t_end is not None else time.monotonic()
        return LoadResult(records, end - self._t0 if self._threads else 0.0, self.header)

    def _ticket(self) -> float | None:
        """When the next request may start (offset), or None when the run is over."""
        with self._lock:
            elapsed = time.monotonic() - self._t0
            when = self._issued / self.rate if self.rate else elapsed
            over_count = self.requests is not None and self._issued >= self.requests
            over_time = self.duration is not None and max(elapsed, when) >= self.duration
            if over_count or over_time or self.stop_event.is_set():
                return None
            self._issued += 1
            return when

    def _worker(self) -> None:
        client = self.shared or httpx.Client(timeout=self.timeout, trust_env=False)
        try:
            while (when := self._ticket()) is not None:
                delay = self._t0 + when - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    return
                record = self._send(client)
                with self._lock:
                    self.records.append(record)
                if self.on_record is not None:
                    self.on_record(record)
        finally:
            if client is not self.shared:
                client.close()

    def _send(self, client: httpx.Client) -> RequestRecord:
        started = time.monotonic()
        retried = False
        while True:
            try:
                response = client.request(url=self.url, timeout=self.timeout, **self.request)
                status, error = response.status_code, None
                value = response.headers.get(self.header) if self.header else None
            except httpx.HTTPError as exc:
                if self.retry_closed and not retried and closed_before_answer(exc):
                    retried = True  # once, on a new connection: the closed one left the pool
                    continue
                status, error, value = None, type(exc).__name__, None
            break
        latency = time.monotonic() - started
        return RequestRecord(
            started - self._t0, latency, status, outcome_of(status), value, error, retried
        )


def _request(method: str, json: Any, headers: Mapping[str, str] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": method.upper(), "headers": dict(headers or {})}
    if json is not None:
        request["json"] = json  # httpx sets Content-Type: application/json
    return request


def run_load(
    target: Target,
    *,
    path: str = "",
    requests: int | None = None,
    duration: float | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    method: str = "GET",
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    header: str | None = "X-Instance",
    progress: bool = False,
    retry_closed: bool = False,
) -> LoadResult:
    """Send load to a loopback URL until `requests` are done or `duration` s have passed."""
    engine = _Engine(
        target,
        path=path,
        requests=requests,
        duration=duration,
        concurrency=concurrency,
        rate=rate,
        request=_request(method, json, headers),
        timeout=timeout,
        header=header,
        retry_closed=retry_closed,
    )
    return engine.run(progress=progress)


class LoadRunner:
    """Continuous background load (e.g. during a deploy) until `stop()`, capped in time."""

    def __init__(
        self,
        target: Target,
        *,
        path: str = "",
        concurrency: int = 2,
        rate: float | None = 50.0,
        max_duration: float = 300.0,
        method: str = "GET",
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        header: str | None = "X-Instance",
        retry_closed: bool = False,
    ) -> None:
        self._engine = _Engine(
            target,
            path=path,
            requests=None,
            duration=max_duration,
            concurrency=concurrency,
            rate=rate,
            request=_request(method, json, headers),
            timeout=timeout,
            header=header,
            retry_closed=retry_closed,
        )
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether load is still being sent."""
        return self._started and not self._engine.join(timeout=0)

    def start(self) -> Self:
        """Begin sending load in background threads."""
        if self._started:
            raise RuntimeError("this LoadRunner was already started")
        self._started = True
        self._engine.start()
        log.info("background load on %s started", self._engine.url)
        return self

    def snapshot(self) -> LoadResult:
        """The results so far, while the load keeps running."""
        return self._engine.result()

    def stop(self) -> LoadResult:
        """Stop sending, wait for in-flight requests, and return every result."""
        self._engine.stop_event.set()
        self._engine.join()
        return self._engine.result()

    @property
    def result(self) -> LoadResult:
        """The results (complete once stopped)."""
        return self._engine.result()
