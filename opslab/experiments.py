"""The runs behind the notebooks' experiment panels: real servers, measured, then drawn.

Each function takes the panel's knob values, starts what it needs with the toolkit,
and returns what the panel shows (a figure and a table). The panel stops every server a
run started; the functions stop theirs too when they are called on their own.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
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


NOT_METRICS = 'route!="/metrics"'  # Prometheus' own scrapes are requests too
SLO_SECONDS = 0.25  # the app's latency SLO (a bucket boundary of its histogram)
WINDOW = "3s"  # three scrapes at the labs' 1 s interval
LIVE_QUERIES = {
    "requests/s": f"sum(rate(http_requests_total{{{NOT_METRICS}}}[{WINDOW}]))",
    "p95 (s)": "histogram_quantile(0.95, sum by (le) "
    f"(rate(http_request_duration_seconds_bucket{{{NOT_METRICS}}}[{WINDOW}])))",
}


def prometheus_load(
    rate: float, slow_rate: float, slow_seconds: float, *, app: Any, prom: Any, seconds: float = 3.5
) -> list[Any]:
    """GETs at `rate` plus slow requests at `slow_rate` to `app`: what `prom` and the client saw.

    Uses the section's app and Prometheus; if they were stopped, starts them for this run
    only (Prometheus' first scrape alone takes about 5 s) and stops them after it.
    """
    from opslab.load import LoadRunner

    started = [server for server in (app, prom) if not server.running]
    try:
        for server in started:
            server.start()
        if prom in started:
            prom.wait_for_scrape(timeout=30)
        slow = f"/debug/slow?seconds={slow_seconds:g}"
        runners = [LoadRunner(app, path="/api/todos", rate=rate, concurrency=4)]
        if slow_rate:
            workers = int(slow_rate * slow_seconds) + 2
            runners.append(LoadRunner(app, path=slow, rate=slow_rate, concurrency=workers))
        t0 = time.time()
        for runner in runners:
            runner.start()
        time.sleep(seconds)
        client = pd.concat([runner.stop().to_dataframe() for runner in runners])
        time.sleep(1.1)  # one more scrape: Prometheus has seen the last requests
        series = {
            name: _range_series(prom, promql, t0, t0 + seconds)
            for name, promql in LIVE_QUERIES.items()
        }
    finally:
        for server in reversed(started):
            server.stop()
    return _prometheus_view(pd.DataFrame(series), client, seconds, rate, slow_rate)


def _range_series(prom: Any, promql: str, start: float, end: float) -> pd.Series:
    results = prom.query_range(promql, start=start, end=end, step=0.5)
    if not results:
        return pd.Series(dtype=float)
    values = pd.DataFrame(results[0]["values"], columns=["t", "v"]).astype(float)
    return pd.Series(values["v"].to_numpy(), index=values["t"] - start)


def _prometheus_view(
    over_time: pd.DataFrame, client: pd.DataFrame, seconds: float, rate: float, slow: float
) -> list[Any]:
    fig = figure(9, 3)
    for number, name in enumerate(over_time.columns, start=1):
        ax = fig.add_subplot(1, 2, number)
        over_time[name].plot(ax=ax, marker=".")
        ax.set(title=f"Prometheus: {name}", xlabel="seconds since the load began", ylabel=name)
    ax.axhline(SLO_SECONDS, color="red", linestyle="--", label=f"SLO {SLO_SECONDS:g} s")
    ax.legend(loc="center right", fontsize=8)
    fig.suptitle(f"{rate:g} GET/s + {slow:g} slow/s")
    steady = over_time.loc[over_time.index >= 3]  # windows filled with this load only
    table = pd.DataFrame(
        {
            "Prometheus (median of the last windows)": [
                steady["requests/s"].median(),
                steady["p95 (s)"].median(),
            ],
            "load generator": [len(client) / seconds, client["latency"].quantile(0.95)],
        },
        index=["requests/s", "p95 (s)"],
    )
    return [fig, table.round(3)]


def deploy_under_load(
    action: str,
    *,
    deploy: Sequence[str],
    releases: Mapping[str, Path],
    versions: Mapping[str, str],
    proxy: Any,
    rate: float = 40,
) -> list[Any]:
    """One deploy-tool command (`deploy vN` or `rollback`) while GETs go through nginx."""
    from opslab.load import LoadRunner

    if action == "rollback":
        args = ["rollback"]
    else:
        name = action.removeprefix("deploy ")
        args = ["deploy", "--release", str(releases[name]), "--expect-version", versions[name]]
    with proxy.client() as reader:
        gets = LoadRunner(reader, path="/version", rate=rate, concurrency=4).start()
        time.sleep(0.5)
        began = gets.snapshot().elapsed
        done = subprocess.run([*deploy, *args], capture_output=True, text=True, timeout=120)
        ended = gets.snapshot().elapsed
        time.sleep(0.5)
        read = gets.stop()
    frame = read.to_dataframe()
    frame["release"] = frame["header"].str.split("@").str[0].fillna("no answer")
    frame["failed"] = frame["outcome"] != "2xx"
    return [
        _deploy_figure(frame, action, began, ended),
        _deploy_counters(frame, action, done.returncode),
    ]


def _deploy_figure(frame: pd.DataFrame, action: str, began: float, ended: float) -> Any:
    fig = figure(9, 3)
    ax = fig.add_subplot()
    order = {name: row for row, name in enumerate(sorted(set(frame["release"])))}
    ok, bad = frame[~frame["failed"]], frame[frame["failed"]]
    ax.scatter(ok["start"], ok["release"].map(order), s=6, label="answered")
    ax.scatter(bad["start"], bad["release"].map(order), marker="x", c="red", label="failed")
    ax.axvspan(began, ended, color="grey", alpha=0.2, label=f"{action} running")
    ax.set(yticks=list(order.values()), yticklabels=list(order), ylim=(-0.5, len(order) - 0.5))
    ax.set(xlabel="seconds since the load started", ylabel="answered by")
    ax.set_title(f"GET /version through nginx during `{action}`")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def _deploy_counters(frame: pd.DataFrame, action: str, exit_code: int) -> pd.DataFrame:
    counts = frame.loc[~frame["failed"], "release"].value_counts().sort_index()
    row = {f"answered by {name}": int(n) for name, n in counts.items()}
    row |= {"failed": int(frame["failed"].sum()), "tool's exit code": exit_code}
    row["live after"] = frame["release"].iloc[-1]
    return pd.DataFrame([row], index=[action])
