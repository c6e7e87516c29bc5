"""Timeline recording and plotting, against a small in-process server and a real app."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime

import matplotlib.pyplot as plt

from opslab import free_port, start_app
from opslab.timeline import Timeline, log_time, probe, shutdown_timeline


def test_request_records_completed_and_failed_spans(http_server: str) -> None:
    timeline = Timeline()
    ok = timeline.request(f"{http_server}/ok", label="ok")
    refused = timeline.request(f"http://127.0.0.1:{free_port()}/", label="nobody")
    assert (ok.outcome, ok.detail) == ("completed", "200")
    assert (refused.outcome, refused.detail) == ("failed", "ConnectError")
    assert ok.start <= ok.end <= refused.start
    assert timeline.counts() == {"completed": 1, "failed": 1}
    assert list(timeline.spans_frame()["label"]) == ["ok", "nobody"]


def test_probe_reports_status_or_refused(http_server: str) -> None:
    assert probe(f"{http_server}/ok") == "200"
    assert probe(f"http://127.0.0.1:{free_port()}/") == "refused"


def test_poll_records_samples_until_stopped(http_server: str) -> None:
    timeline, stop = Timeline(), threading.Event()
    poller = threading.Thread(
        target=timeline.poll, args=(f"{http_server}/ok",), kwargs={"stop": stop}
    )
    poller.start()
    time.sleep(0.3)
    stop.set()
    poller.join(timeout=5)
    assert len(timeline.samples) >= 3
    assert timeline.first("/ok", "200") is not None
    assert timeline.first("/ok", "503") is None


def test_marks_from_log_places_lines_by_their_timestamp() -> None:
    timeline = Timeline()
    stamp = datetime.fromtimestamp(time.time() + 2.0).strftime("%Y-%m-%d %H:%M:%S,%f")[:23]
    text = f"no time here: pool\n{stamp} INFO    sample_app.db: database connection pool closed\n"
    marks = timeline.marks_from_log(text, {"closed": "pool closed", "absent": "not there"})
    assert [m.label for m in marks] == ["closed"]
    assert 1.9 <= marks[0].at <= 2.1
    assert log_time("garbage") is None


def test_plot_draws_bars_samples_and_events(http_server: str) -> None:
    timeline = Timeline()
    timeline.request(f"{http_server}/ok", label="r1")
    timeline.add_span("r2", 0.1, 0.5, "failed", "ReadError")
    timeline.mark("SIGTERM sent", at=0.2)
    ax = timeline.plot(title="test")
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    plt.close(ax.figure)
    assert labels == ["r1", "r2"]
    assert len(ax.patches) == 2
    assert any("SIGTERM sent" in text for text in legend)


def test_shutdown_timeline_sigterm_completes_in_flight_requests() -> None:
    app = start_app(name="test-timeline", drain_seconds=0.5, shutdown_timeout=3)
    try:
        timeline = shutdown_timeline(app, app.url, signal.SIGTERM, starts=(0.0, 0.1), seconds=1.0)
    finally:
        app.stop()
    events = {e.label: e.at for e in timeline.events}
    assert timeline.counts() == {"completed": 2, "failed": 0}
    assert events["SIGTERM sent"] < events["/ready 503"] < events["connection refused"]
    assert events["lifespan: DB pool closed"] <= events["process exited"]


def test_shutdown_timeline_sigkill_fails_in_flight_requests() -> None:
    app = start_app(name="test-timeline")
    try:
        timeline = shutdown_timeline(app, app.url, signal.SIGKILL, starts=(0.0, 0.1), seconds=1.0)
    finally:
        app.stop()
    events = {e.label for e in timeline.events}
    assert timeline.counts() == {"completed": 0, "failed": 2}
    assert "lifespan: DB pool closed" not in events
