"""The runs behind the notebooks' experiment panels: real servers, measured, then drawn.

Each function takes the panel's knob values, starts what it needs with the toolkit,
and returns what the panel shows (a figure and a table). The panel stops every server a
run started; the functions stop theirs too when they are called on their own.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pandas as pd

from opslab.app import start_app
from opslab.panel import figure
from opslab.timeline import shutdown_timeline


class GraceStopper:
    """What `docker stop -t GRACE` does to the app: SIGTERM, then SIGKILL once GRACE is over."""

    def __init__(self, app: Any, grace: float) -> None:
        self.app, self.grace = app, grace
        self.sigterm_at: float | None = None
        self.killed_after: float | None = None
        self._timer: threading.Timer | None = None

    def send_signal(self, sig: int) -> None:
        self.app.send_signal(sig)
        self.sigterm_at = time.monotonic()
        self._timer = threading.Timer(self.grace, self._kill)
        self._timer.start()

    def _kill(self) -> None:
        if self.app.returncode is None:
            self.app.send_signal(signal.SIGKILL)
            self.killed_after = time.monotonic() - (self.sigterm_at or 0.0)

    def wait(self, timeout: float) -> int | None:
        code = self.app.wait(timeout)
        if self._timer is not None:
            self._timer.cancel()
        return code

    def log_text(self) -> str:
        return self.app.log_text()


def sigterm(
    drain_seconds: float, shutdown_timeout: float, request_seconds: float, grace: float
) -> list[Any]:
    """Four slow requests, SIGTERM at 0.4 s, SIGKILL after `grace` s: the timeline and a summary."""
    app = start_app(
        name="panel-sigterm", drain_seconds=drain_seconds, shutdown_timeout=shutdown_timeout
    )
    try:
        stopper = GraceStopper(app, grace)
        timeline = shutdown_timeline(
            stopper, app.url, signal.SIGTERM, seconds=request_seconds, wait=20
        )
    finally:
        app.stop()
    events = timeline.events_frame().set_index("label")["at"]
    if stopper.killed_after is not None:
        timeline.mark("SIGKILL (grace over)", at=events["SIGTERM sent"] + stopper.killed_after)
    fig = figure(9, 3.5)
    timeline.plot(fig.add_subplot(), title=f"SIGTERM, then SIGKILL after {grace:g} s")
    summary = {
        **timeline.counts(),
        "SIGTERM→exit (s)": round(events["process exited"] - events["SIGTERM sent"], 2),
        "killed (SIGKILL)": stopper.killed_after is not None,
        "DB pool closed": "lifespan: DB pool closed" in events.index,
    }
    return [fig, pd.DataFrame([summary], index=["this run"])]


def rate_limit(rate: float, burst: float, offered: float, seconds: float = 2.0) -> list[Any]:
    """`offered` requests/s for `seconds` against nginx's `limit_req` on /api/: 200s and 429s."""
    from opslab.load import run_load
    from opslab.proxy import AppProxy

    rate, burst = int(rate), int(burst)
    app = start_app(name="panel-rate-app", instance_id="a")
    proxy = AppProxy([app], name="panel-rate-proxy", api_rate=f"{rate}r/s", api_burst=burst)
    try:
        proxy.start()
        with proxy.client() as client:
            load = run_load(client, path="/api/todos", duration=seconds, rate=offered)
    finally:
        proxy.stop()
        app.stop()
    frame = load.to_dataframe()
    fig = figure(7, 3)
    ax = fig.add_subplot()
    pd.crosstab(frame["start"], frame["status"]).cumsum().plot(ax=ax, drawstyle="steps-post")
    ax.set(xlabel="seconds since the load began", ylabel="responses so far")
    ax.set_title(f"{offered:g} req/s offered; limit_req rate={rate}r/s burst={burst}")
    summary = {
        "sent": len(frame),
        "200 (passed)": int((frame["status"] == 200).sum()),
        "429 (refused by nginx)": int((frame["status"] == 429).sum()),
        "other": int((~frame["status"].isin([200, 429])).sum()),
        "burst + 1 + rate * elapsed": round(burst + 1 + rate * load.elapsed, 1),
    }
    return [fig, pd.DataFrame([summary], index=["this run"])]
