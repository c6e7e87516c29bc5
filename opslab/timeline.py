"""What happens to requests while a server shuts down: a timeline of spans and events.

A `Timeline` records, in seconds since it was created, each request as a span (start,
end, outcome), event markers ("SIGTERM sent", "process exited", lines from the server's
log placed by their timestamps) and polled samples (what `/ready` answered when). It
draws them as one plot: requests as horizontal bars coloured by outcome, events as
vertical lines. `shutdown_timeline()` and `stream_shutdown()` are the two experiments
the graceful-shutdown notebook runs more than once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from opslab.load import check_loopback
from opslab.procs import ManagedProcess

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

OUTCOME_COLOURS = {"completed": "tab:green", "failed": "tab:red"}
SAMPLE_COLOURS = {"200": "tab:green", "503": "tab:orange", "refused": "black"}
EVENT_COLOURS = ("tab:blue", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink")
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # logging's asctime, as the app's log lines start
LOG_TIME_LENGTH = 23
# Log lines worth a marker on a shutdown timeline: label -> text the line contains.
SHUTDOWN_LOG_MARKS = {
    "uvicorn: Shutting down": "uvicorn.error: Shutting down",
    "lifespan: DB pool closed": "database connection pool closed",
}


@dataclass(frozen=True)
class Span:
    """One request: when it ran and how it ended ('completed' or 'failed', with detail)."""

    label: str
    start: float
    end: float
    outcome: str
    detail: str


@dataclass(frozen=True)
class Event:
    """A moment worth a vertical line."""

    at: float
    label: str


@dataclass(frozen=True)
class Sample:
    """One poll of a series (e.g. '/ready'): its answer at that moment."""

    at: float
    series: str
    value: str


def probe(url: str, *, timeout: float = 1.0) -> str:
    """GET `url` on a new connection: the status code, 'refused', or the error's name."""
    check_loopback(url)
    try:
        return str(httpx.get(url, timeout=timeout, trust_env=False).status_code)
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError as error:
        return type(error).__name__


def log_time(line: str) -> float | None:
    """The Unix time at the start of a log line (the app's format), None if it has none."""
    try:
        return datetime.strptime(line[:LOG_TIME_LENGTH], LOG_TIME_FORMAT).timestamp()
    except ValueError:
        return None


class Timeline:
    """Spans, events and samples on one clock: seconds since the timeline was created."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._wall0 = time.time()  # log lines carry wall-clock times
        self._lock = threading.Lock()
        self.spans: list[Span] = []
        self.events: list[Event] = []
        self.samples: list[Sample] = []

    def now(self) -> float:
        """Seconds since the timeline began."""
        return time.monotonic() - self._t0

    def sleep_until(self, at: float) -> None:
        """Block until `at` seconds on this timeline."""
        time.sleep(max(0.0, at - self.now()))

    def mark(self, label: str, at: float | None = None) -> Event:
        """Record an event now (or at `at`)."""
        event = Event(self.now() if at is None else at, label)
        with self._lock:
            self.events.append(event)
        return event

    def add_span(self, label: str, start: float, end: float, outcome: str, detail: str) -> Span:
        """Record a request that ran from `start` to `end`."""
        span = Span(label, start, end, outcome, detail)
        with self._lock:
            self.spans.append(span)
        return span

    def request(self, url: str, *, label: str, method: str = "GET", timeout: float = 10.0) -> Span:
        """Send one request on a new connection and record it; 5xx and errors count as failed."""
        check_loopback(url)
        start = self.now()
        try:
            with httpx.Client(timeout=timeout, trust_env=False) as client:
                status = client.request(method, url).status_code
            outcome, detail = ("completed" if status < 500 else "failed"), str(status)
        except httpx.HTTPError as error:
            outcome, detail = "failed", type(error).__name__
        return self.add_span(label, start, self.now(), outcome, detail)

    def poll(self, url: str, *, stop: threading.Event, interval: float = 0.05) -> None:
        """Probe `url` every `interval` s until `stop` is set (run it in a thread)."""
        series = httpx.URL(url).path
        while not stop.is_set():
            value = probe(url)
            with self._lock:
                self.samples.append(Sample(self.now(), series, value))
            stop.wait(interval)

    def first(self, series: str, value: str) -> float | None:
        """When `series` first answered `value`, None if it never did."""
        return next((s.at for s in self.samples if s.series == series and s.value == value), None)

    def marks_from_log(self, text: str, patterns: Mapping[str, str]) -> list[Event]:
        """Mark the first log line containing each pattern, at the time the line carries."""
        found = []
        for label, needle in patterns.items():
            line = next((line for line in text.splitlines() if needle in line), None)
            if line is not None and (wall := log_time(line)) is not None:
                found.append(self.mark(label, at=wall - self._wall0))
        return found

    def counts(self) -> dict[str, int]:
        """Requests by outcome."""
        return {o: sum(s.outcome == o for s in self.spans) for o in OUTCOME_COLOURS}

    def spans_frame(self) -> pd.DataFrame:
        """One row per request, in start order."""
        import pandas as pd

        columns = ["label", "start", "end", "outcome", "detail"]
        rows = [asdict(s) for s in sorted(self.spans, key=lambda s: s.start)]
        return pd.DataFrame(rows, columns=columns)

    def events_frame(self) -> pd.DataFrame:
        """One row per event, in time order."""
        import pandas as pd

        rows = [asdict(e) for e in sorted(self.events, key=lambda e: e.at)]
        return pd.DataFrame(rows, columns=["at", "label"])

    def plot(self, ax: Axes | None = None, *, title: str = "") -> Axes:
        """Requests as bars by outcome, samples as dots on their own row, events as lines."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 3.5))
        spans = sorted(self.spans, key=lambda s: s.start)
        rows = [s.label for s in spans]
        for row, span in enumerate(spans):
            colour = OUTCOME_COLOURS.get(span.outcome, "grey")
            ax.barh(row, span.end - span.start, left=span.start, color=colour, height=0.6)
            ax.text(span.end, row, f" {span.detail}", va="center", fontsize=8)
        for series in dict.fromkeys(s.series for s in self.samples):
            row = len(rows)
            rows.append(f"{series} polls")
            for value in dict.fromkeys(s.value for s in self.samples if s.series == series):
                times = [s.at for s in self.samples if s.series == series and s.value == value]
                colour = SAMPLE_COLOURS.get(value, "tab:purple")
                ax.scatter(
                    times, [row] * len(times), s=12, color=colour, label=f"{series}: {value}"
                )
        self._draw_events(ax)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds")
        ax.set_title(title)
        handles, _ = ax.get_legend_handles_labels()
        bars = [Patch(color=c, label=f"request {o}") for o, c in OUTCOME_COLOURS.items()]
        ax.legend(handles=bars + handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        return ax

    def _draw_events(self, ax: Axes) -> None:
        """One dashed line per event; the legend names them in time order."""
        for number, event in enumerate(sorted(self.events, key=lambda e: e.at)):
            colour = EVENT_COLOURS[number % len(EVENT_COLOURS)]
            label = f"{event.at:.2f} s  {event.label}"
            ax.axvline(event.at, color=colour, linestyle="--", linewidth=1.2, label=label)


def _request_at(timeline: Timeline, at: float, url: str, label: str) -> Span:
    timeline.sleep_until(at)
    return timeline.request(url, label=label)


def shutdown_timeline(
    app: ManagedProcess,
    url: str,
    sig: int,
    *,
    starts: Sequence[float] = (0.0, 0.1, 0.2, 0.8),
    seconds: float = 1.5,
    signal_at: float = 0.4,
    poll_path: str = "/ready",
    wait: float = 15.0,
) -> Timeline:
    """Slow requests started at `starts`, `sig` sent at `signal_at`: what became of each.

    `url` is the app's base URL. Polls `poll_path` on new connections throughout, waits
    for the process to exit (at most `wait` s), then adds the shutdown log lines.
    """
    timeline, stop = Timeline(), threading.Event()
    poller = threading.Thread(
        target=timeline.poll, args=(f"{url}{poll_path}",), kwargs={"stop": stop}, daemon=True
    )
    poller.start()
    slow = f"{url}/debug/slow?seconds={seconds}"
    with ThreadPoolExecutor(max_workers=len(starts)) as pool:
        for number, at in enumerate(starts, start=1):
            pool.submit(_request_at, timeline, at, slow, f"request {number}")
        timeline.sleep_until(signal_at)
        app.send_signal(sig)
        timeline.mark(f"{signal.Signals(sig).name} sent")
        if app.wait(wait) is not None:
            timeline.mark("process exited")
    time.sleep(0.15)  # a few polls after the exit
    stop.set()
    poller.join()
    for value, label in (("503", "/ready 503"), ("refused", "connection refused")):
        if (at := timeline.first(poll_path, value)) is not None:
            timeline.mark(label, at=at)
    timeline.marks_from_log(app.log_text(), SHUTDOWN_LOG_MARKS)
    return timeline


@dataclass(frozen=True)
class StreamShutdown:
    """An open SSE stream against SIGTERM: how long until the stream ended and the exit."""

    stream_ended_s: float | None
    exit_s: float | None
    said_bye: bool
    exit_code: int | None


def stream_shutdown(
    app: ManagedProcess, url: str, *, path: str = "/chat/stream?ping=0.2", wait: float = 15.0
) -> StreamShutdown:
    """Open an SSE stream at `url + path`, SIGTERM the app once it flows, time the end."""
    check_loopback(url)
    flowing, lines, ended = threading.Event(), [], threading.Event()

    def read() -> None:
        try:
            with httpx.stream("GET", f"{url}{path}", timeout=wait, trust_env=False) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    flowing.set()
        except httpx.HTTPError:
            pass  # a stream cut by the server: what the timing shows
        finally:
            ended.set()
            flowing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not flowing.wait(wait):
        raise TimeoutError(f"no data from {url}{path} within {wait:g}s")
    started = time.monotonic()
    app.send_signal(signal.SIGTERM)
    stream_end = time.monotonic() - started if ended.wait(wait) else None
    code = app.wait(wait)
    exit_s = time.monotonic() - started if code is not None else None
    reader.join(timeout=1.0)
    return StreamShutdown(stream_end, exit_s, "event: bye" in lines, code)
