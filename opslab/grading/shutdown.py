"""Checks for review question 3: the learner's server, run as a subprocess, shuts down gracefully.

The server is the learner's Python source; it must listen on 127.0.0.1 at the port given as
its first argument and answer `GET /slow?seconds=S` after S seconds. The check sends slow
requests, then SIGTERM, and requires every request to complete, a NEW connection tried while
they are still running not to be served, and the process to exit with code 0 soon after the
last one finished. The process (and anything it started) is always killed at the end.

Every bound is derived from what is measured on the spot, so that it holds on a loaded
machine and no fixed delay passes: the server's start-up time and its latency for an
instant request, plus the stdlib `serve_forever()` poll interval (0.5 s), within which a
`shutdown()` takes effect. A handler that only sleeps a fixed time cannot both outlast the
slow request of one case and exit soon enough after the short one of another.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.procs import free_port
from opslab.sandbox import confine

START_SECONDS = 10.0
POLL_SECONDS = 0.5  # socketserver's serve_forever(poll_interval=0.5): shutdown() acts within it
UNANSWERED = " (Not answered yet? The code has no signal handler.)"


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise CheckFailed(
                f"The server exited at start (code {proc.returncode}). Its last lines:\n"
                + "\n".join(tail)
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise CheckFailed(f"The server did not listen on its port within {START_SECONDS:g} s.")


@contextlib.contextmanager
def learner_server(source: object, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The learner's server (`python server.py PORT *args`) on a free port; its whole group
    is killed on the way out."""
    require_answer(source, "server source code (a string)")
    if not isinstance(source, str):
        raise CheckFailed("`server_source` should be a string holding the server's Python code.")
    with tempfile.TemporaryDirectory(prefix="opslab-grading-") as tmp:
        # The log stays outside the folder the server may write: no symlink can redirect it.
        work, log = Path(tmp, "work"), Path(tmp, "server.log")
        work.mkdir()
        script = work / "server.py"
        script.write_text(source)
        port = free_port()
        command = confine.server_command([sys.executable, script, str(port), *args], work)
        with log.open("wb") as out:  # confined when grading: the learner's user, no network
            proc = confine.ConfinedPopen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_listening(proc, port, log)
            yield proc, port
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Pace:
    """How fast this server and this machine are right now: the margins scale with it."""

    startup: float
    latency: float

    @property
    def margin(self) -> float:
        """Slack for scheduling on a loaded machine: grows with what was measured."""
        return 0.5 + 10 * self.latency + self.startup

    @property
    def settle(self) -> float:
        """How long a sent request takes to be in the server's hands."""
        return max(0.2, 5 * self.latency)


def _send(port: int, path: str) -> socket.socket:
    """Connect and send `GET path` now, in the calling thread: the request is on its way.

    A raw socket rather than an HTTP client: building a client (its TLS context) in each of
    several threads takes long enough on a loaded machine that a request could still be
    unsent when SIGTERM goes out.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=START_SECONDS)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def _answer(sock: socket.socket, timeout: float) -> str:
    """Read the response until the server closes: "ok" for a 200, else what happened."""
    sock.settimeout(timeout)
    data, error = b"", ""
    with sock:
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as exc:  # a reset, or the time-out
            error = f"{type(exc).__name__}: {exc}".strip()
    status = data.split(b"\r\n", 1)[0].split()
    if len(status) >= 2 and status[0].startswith(b"HTTP/"):
        return "ok" if status[1] == b"200" else f"HTTP {status[1].decode(errors='replace')}"
    return error or "the connection was closed without an answer"


def http_get(port: int, path: str, timeout: float) -> str:
    """GET path on a new connection: "ok" for a 200, else what happened (refused, reset...)."""
    try:
        sock = _send(port, path)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return _answer(sock, timeout)


def measure_pace(port: int, startup: float, path: str = "/slow?seconds=0") -> Pace:
    """Time three instant requests (each on a new connection) before the test proper."""
    latencies = []
    for _ in range(3):
        started = time.monotonic()
        outcome = http_get(port, path, START_SECONDS)
        if outcome != "ok":
            raise CheckFailed(f"GET {path} before any SIGTERM did not answer 200: {outcome}.")
        latencies.append(time.monotonic() - started)
    return Pace(startup=startup, latency=max(latencies))


def _in_background(
    port: int, path: str, timeout: float, results: list[tuple[str, float]]
) -> threading.Thread:
    """Send GET path now; a thread appends (outcome, when it ended) to `results`."""
    sock: socket.socket | None
    try:
        sock = _send(port, path)
    except OSError as exc:
        results.append((f"{type(exc).__name__}: {exc}".strip(), time.monotonic()))
        sock = None

    def read() -> None:
        if sock is not None:
            results.append((_answer(sock, timeout), time.monotonic()))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _stop_within(proc: subprocess.Popen[bytes], bound: float) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"The server was still running {bound:.1f} s after SIGTERM (the orchestrator would "
            "now SIGKILL it). Hint: make serve_forever() return, then close the server."
        ) from None
    return time.monotonic() - started


def _require_exit_code_zero(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode != 0:
        raise CheckFailed(
            f"After SIGTERM the server exited with code {proc.returncode}, not 0: a stop the "
            "server handled should end normally (return from main, no os._exit(1))."
        )


def _probe_refused(port: int, at: float, timeout: float) -> tuple[threading.Thread, list]:
    """At time `at`, open a new connection and GET an instant page, in the background."""
    results: list[tuple[str, float]] = []
    time.sleep(max(0.0, at - time.monotonic()))
    return _in_background(port, "/slow?seconds=0", timeout, results), results


def _failed_requests(results: list[tuple[str, float]], requests: int) -> list[str]:
    return [r for r, _ in results if r != "ok"] + ["no answer"] * (requests - len(results))


@friendly
def check_graceful(source: object, *, slow: float = 2.0, requests: int = 1) -> None:
    """On SIGTERM: requests in flight complete, a new connection is not served, exit 0 soon.

    The new connection is tried POLL_SECONDS + margin after SIGTERM when the slow requests
    still have at least a margin to run; the exit must come within POLL_SECONDS + margin of
    the last response.
    """
    began = time.monotonic()
    with learner_server(source) as (proc, port):
        pace = measure_pace(port, time.monotonic() - began)
        wait = slow + POLL_SECONDS + pace.margin + START_SECONDS
        results: list[tuple[str, float]] = []
        path = f"/slow?seconds={slow:g}"
        threads = [_in_background(port, path, wait, results) for _ in range(requests)]
        first = time.monotonic()
        time.sleep(pace.settle)  # the requests are now in the server's hands
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        probe_at = sent + POLL_SECONDS + pace.margin
        probe = None
        if probe_at < first + slow - pace.margin:  # the slow requests are still running then
            probe = _probe_refused(port, probe_at, wait)
        for thread in threads:
            thread.join(wait)
        _judge_requests(source, proc, results, requests, wait)
        last = max(when for _, when in results)
        _judge_exit(proc, last, sent, POLL_SECONDS + pace.margin)
        if probe is not None:
            probe[0].join(wait)
            _judge_probe(probe[1], probe_at - sent, slow)


def _judge_requests(
    source: object, proc: subprocess.Popen[bytes], results: list, requests: int, wait: float
) -> None:
    failed = _failed_requests(results, requests)
    if failed:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        hint = "" if "signal" in str(source) else UNANSWERED
        raise CheckFailed(
            f"{len(failed)} of {requests} request(s) in flight at SIGTERM did not complete: "
            f"{failed[0].rstrip('.')}. The server exited with code {proc.returncode}.{hint} "
            "Hint: handle SIGTERM by stopping the accept loop, then wait for requests in "
            "progress."
        )


def _judge_exit(proc: subprocess.Popen[bytes], last: float, sent: float, allowed: float) -> None:
    try:
        proc.wait(timeout=max(0.0, last + allowed - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"The server was still running {allowed:.1f} s after its last request finished "
            f"({last + allowed - sent:.1f} s after SIGTERM). Exit as soon as the requests in "
            "progress are done, not after a fixed delay: the check sends requests of different "
            "lengths. Hint: serve_forever() returns after shutdown(); then close the server."
        ) from None
    _require_exit_code_zero(proc)


def _judge_probe(results: list[tuple[str, float]], after: float, slow: float) -> None:
    outcome = results[0][0] if results else "no answer"
    if outcome == "ok":
        raise CheckFailed(
            f"A new connection opened {after:.1f} s after SIGTERM, while a {slow:g} s request "
            "was still in progress, was served (200): the server kept accepting. On SIGTERM "
            "stop accepting new connections (serve_forever() returns after shutdown()), and "
            "only finish the ones already in progress."
        )


@friendly
def check_idle_exit(source: object, *, bound: float | None = None) -> None:
    """With nothing in flight, SIGTERM ends the server soon (poll interval + margin), code 0."""
    began = time.monotonic()
    with learner_server(source) as (proc, port):
        pace = measure_pace(port, time.monotonic() - began)
        _stop_within(proc, POLL_SECONDS + pace.margin if bound is None else bound)
        _require_exit_code_zero(proc)
