"""`make bench`: the sample app's serving figures as ratios to a bare ASGI app, in one run.

Every server is started first, then each row is measured with wrk in turn, `rounds` times,
rotating the order, so a machine that slows down during the run slows every row alike. The
ceiling is `opslab.bench_hello` under the same uvicorn with one worker: the ratios say what
the app, nginx and the settings cost, whatever the machine. `--course` also times the
notebooks (`opslab.bench_course`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from opslab.app import start_app
from opslab.bench_profile import TARGETS, Profile, profile_route, profile_section
from opslab.nginx import Nginx, nginx_version
from opslab.procs import ManagedProcess, free_port
from opslab.wrk import WrkResult, start_wrk, wrk_result

log = logging.getLogger(__name__)

NEVER = 10**9  # post_every: wrk only sends GETs
TODOS = 10
# A plain-HTTP proxy: the course's full config (TLS, rate limits) would measure its limits.
NGINX_HTTP = """\
upstream app {
    server {{ upstream }};
{%- if keepalive %}
    keepalive 32;
{%- endif %}
}
server {
    listen 127.0.0.1:{{ port }};
    access_log off;
    location / {
{%- if keepalive %}
        proxy_http_version 1.1;
        proxy_set_header Connection "";
{%- endif %}
        proxy_set_header Host $host:$server_port;
        proxy_pass http://app;
    }
}
"""


@dataclass(frozen=True)
class Row:
    """One line of the report: a path on one of the servers."""

    key: str
    label: str
    server: str
    path: str


ROWS = (
    Row("hello", "bare ASGI hello, 1 worker (ceiling)", "hello", "/"),
    Row("health", "app /health, 1 worker", "app", "/health"),
    Row("todos", f"app /api/todos ({TODOS} todos), 1 worker", "app", "/api/todos"),
    Row("page", "app / (HTML page), 1 worker", "app", "/"),
    Row(
        "nginx-keepalive", "/api/todos via nginx, upstream keep-alive on", "nginx-ka", "/api/todos"
    ),
    Row("nginx-no-keepalive", "/api/todos via nginx, keep-alive off", "nginx-noka", "/api/todos"),
    Row("workers-2", "app /api/todos, 2 uvicorn workers", "app-2w", "/api/todos"),
    Row("metrics-off", "app /api/todos, METRICS_ENABLED=false", "app-nometrics", "/api/todos"),
)


@dataclass
class Measured:
    """Every round's wrk result for one row."""

    row: Row
    results: list[WrkResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return statistics.median(r.requests / self.seconds for r in self.results)

    @property
    def rounds_rps(self) -> str:
        """Each round's req/s: how far apart they are is the noise on this machine."""
        return " / ".join(f"{r.requests / self.seconds:.0f}" for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)


def _hello(name: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "opslab.bench_hello:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--lifespan", "off", "--no-access-log",
           "--no-server-header", "--timeout-keep-alive", "5"]  # fmt: skip
    proc = ManagedProcess(cmd, name=name, cwd=Path(__file__).resolve().parent.parent)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/")
    return proc, url


def _app(name: str, **kwargs: object) -> tuple[ManagedProcess, str]:
    server = start_app(name=name, **kwargs)  # type: ignore[arg-type]
    with server.client() as client:
        for n in range(TODOS):
            client.post("/api/todos", json={"title": f"bench {n}"}).raise_for_status()
    return server, server.url


def _nginx(name: str, upstream: str, *, keepalive: bool) -> tuple[ManagedProcess, str]:
    nginx = Nginx(name=name)
    address = upstream.removeprefix("http://")
    nginx.start(nginx.config(NGINX_HTTP, upstream=address, keepalive=keepalive))
    return nginx, nginx.url


def start_servers(
    names: set[str], stack: contextlib.ExitStack, procs: dict[str, ManagedProcess] | None = None
) -> dict[str, str]:
    """Start the servers the rows need (stopped when `stack` closes); their base URLs."""
    urls: dict[str, str] = {}
    procs = {} if procs is None else procs
    starters: dict[str, Callable[[], tuple[ManagedProcess, str]]] = {
        "hello": lambda: _hello("bench-hello"),
        "app": lambda: _app("bench-app"),
        "app-2w": lambda: _app("bench-app-2w", workers=2, multiprocess_metrics=True),
        "app-nometrics": lambda: _app("bench-app-nometrics", metrics_enabled=False),
        "nginx-ka": lambda: _nginx("bench-nginx-ka", urls["app"], keepalive=True),
        "nginx-noka": lambda: _nginx("bench-nginx-noka", urls["app"], keepalive=False),
    }
    if names & {"nginx-ka", "nginx-noka"}:
        names = names | {"app"}
    for name in starters:  # in this order: nginx needs the app's URL
        if name in names:
            proc, urls[name] = starters[name]()
            procs[name] = proc
            stack.callback(proc.stop)
    return urls


def _warm(url: str) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(50):
            client.get(url).raise_for_status()


def measure(
    rows: Sequence[Row],
    *,
    seconds: int,
    threads: int,
    connections: int,
    rounds: int,
    profile: bool = True,
) -> tuple[list[Measured], list[Profile]]:
    """Start the servers, run wrk on each row `rounds` times, rotating the order, then
    (`profile`) record with py-spy each route that misses its target."""
    measured = [Measured(row, seconds=seconds) for row in rows]
    procs: dict[str, ManagedProcess] = {}
    with contextlib.ExitStack() as stack:
        urls = start_servers({row.server for row in rows}, stack, procs)
        for m in measured:
            _warm(urls[m.row.server] + m.row.path)
        for n in range(rounds):
            shift = n % len(measured)
            for m in measured[shift:] + measured[:shift]:
                url, path = urls[m.row.server], m.row.path
                wrk = {"threads": threads, "connections": connections, "post_every": NEVER}
                proc = start_wrk(url, seconds=seconds, get_path=path, **wrk)
                m.results.append(wrk_result(proc, timeout=seconds + 30))
                log.info("%s: %.0f req/s", m.row.key, m.results[-1].requests / seconds)
        profiles = []
        for m in missed_targets(measured) if profile else []:
            pid = procs[m.row.server].pid
            assert pid is not None
            profiles.append(profile_route(m.row.label, pid, urls[m.row.server], m.row.path,
                                          seconds=seconds, connections=connections))  # fmt: skip
    return measured, profiles


def missed_targets(measured: Sequence[Measured]) -> list[Measured]:
    """The rows with a target (`bench_profile.TARGETS`) whose ratio to the ceiling is below it."""
    ceiling = next(m for m in measured if m.row.key == "hello")
    return [m for m in measured if m.rps / ceiling.rps < TARGETS.get(m.row.key, 0)]


def targets_table(measured: Sequence[Measured]) -> str:
    """Each route with a target: the ratio wanted, the ratio measured, met or not."""
    ceiling = next(m for m in measured if m.row.key == "hello")
    lines = ["| route | target ratio | measured ratio | p99 ms | met |", "|---|---:|---:|---:|---|"]
    for m in measured:
        if (target := TARGETS.get(m.row.key)) is not None:
            ratio = m.rps / ceiling.rps
            met = "yes" if ratio >= target else "no: profile below"
            lines.append(f"| {m.row.label} | {target:.2f} | {ratio:.3f} | {m.p99_ms:.1f} | {met} |")
    return "\n".join(lines)


def report_table(measured: Sequence[Measured]) -> str:
    """The markdown table: req/s and p99 for each row, and both as ratios to the ceiling."""
    ceiling = next(m for m in measured if m.row.key == "hello")
    lines = [
        "| row | req/s | req/s ratio to hello | p99 ms | p99 ratio to hello | failed "
        "| req/s per round |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measured:
        lines.append(
            f"| {m.row.label} | {m.rps:.0f} | {m.rps / ceiling.rps:.3f} | {m.p99_ms:.2f} "
            f"| {m.p99_ms / ceiling.p99_ms:.2f} | {m.failed} | {m.rounds_rps} |"
        )
    return "\n".join(lines)


def write_report(
    measured: Sequence[Measured],
    out: Path,
    params: dict[str, object],
    profiles: Sequence[Profile] = (),
) -> Path:
    """report.md with the machine, wrk's parameters, the table and what the rows mean."""
    ngx = nginx_version() or "not installed"
    head = [
        "# Serving benchmark",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- cores (os.cpu_count()): {os.cpu_count()}; wrk, servers and nginx share them",
        f"- load average at the start: {params.pop('loadavg')}",
        f"- wrk: {' '.join(f'{k}={v}' for k, v in params.items())} (GETs only, keep-alive);"
        " each row's figure is the median over the rounds",
        f"- Python {platform.python_version()}, nginx {ngx}",
        "",
    ]
    notes = [
        "",
        "Ratios are to the bare ASGI app (`opslab.bench_hello`) under the same uvicorn, one"
        " worker, no access log: the stack's ceiling. The sample app runs as in the course"
        " (`python -m sample_app serve`, APP_ENV=development, access log at info).",
        "nginx rows use a minimal plain-HTTP proxy (one nginx worker, no access log) in front"
        " of the 1-worker app; keep-alive off is nginx's default (HTTP/1.0, a new upstream"
        " connection per request).",
        "The metrics switch is the app's own setting `METRICS_ENABLED` (sample_app/config.py);"
        " the 2-worker app uses PROMETHEUS_MULTIPROC_DIR, as the course does with workers.",
        "req/s is wrk's request count divided by the requested duration.",
    ]
    targets = ["", "## Targets (ratio of the ceiling's req/s, one worker)", "",
               targets_table(measured)]  # fmt: skip
    if not any(m.row.key in TARGETS for m in measured):
        targets = []
    body = [*head, report_table(measured), *notes, *targets]
    if profiles:
        body.append(profile_section(profiles))
    text = "\n".join(body) + "\n"
    path = out / "report.md"
    path.write_text(text)
    return path


def plot(measured: Sequence[Measured], path: Path) -> Path:
    """Two bar panels: req/s as a fraction of the ceiling, and p99 latency in ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling = next(m for m in measured if m.row.key == "hello")
    labels = [m.row.label for m in measured][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * len(measured) + 1.5), sharey=True)
    left.barh(labels, [m.rps / ceiling.rps for m in measured][::-1], color="tab:blue")
    left.set_xscale("log")  # the app is a few per cent of the ceiling: linear bars vanish
    left.set_xlabel("req/s as a fraction of the bare ASGI app (log scale)")
    right.barh(labels, [m.p99_ms for m in measured][::-1], color="tab:orange")
    right.set_xlabel("p99 latency (ms)")
    fig.suptitle(f"Serving on {os.cpu_count()} cores (wrk, loopback)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Measure the rows, write report.md and serving.png into --out."""
    parser = argparse.ArgumentParser(prog="python -m opslab.bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("_build/bench"))
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per row, interleaved")
    keys = [row.key for row in ROWS]
    parser.add_argument("--rows", help=f"comma-separated subset of {','.join(keys)}")
    parser.add_argument("--course", action="store_true", help="also time every notebook")
    parser.add_argument(
        "--no-profile", action="store_true", help="no py-spy profile of a missed target"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per warm-up request
    wanted = set(args.rows.split(",")) if args.rows else set(keys)
    if unknown := wanted - set(keys):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    rows = [row for row in ROWS if row.key in wanted | {"hello"}]  # the ceiling always runs
    args.out.mkdir(parents=True, exist_ok=True)
    params: dict[str, object] = {"loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    params |= {"threads": args.threads, "connections": args.connections,
               "duration_s": args.duration, "rounds": args.rounds}  # fmt: skip
    measured, profiles = measure(rows, seconds=args.duration, threads=args.threads,
                                 connections=args.connections, rounds=args.rounds,
                                 profile=not args.no_profile)  # fmt: skip
    report = write_report(measured, args.out, params, profiles)
    plot(measured, args.out / "serving.png")
    if args.course:
        from opslab.bench_course import append_course_timings

        append_course_timings(report)
    log.info("wrote %s and %s", report, args.out / "serving.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
