"""Checks for checkpoint 06: readiness goes 503 while the server drains after SIGTERM.

The learner's server (Python source, stdlib or anything the venv has) is run as
`python server.py PORT DRAIN_SECONDS` on 127.0.0.1. `GET /health` (liveness) and `GET /ready`
(readiness) answer 200. After SIGTERM it must keep serving for DRAIN_SECONDS with /ready
answering 503 and /health still 200, so a load balancer takes it out of rotation, then exit
with code 0. The process group is always killed at the end.

The drain is checked for several values of DRAIN_SECONDS: the server must still answer at
0.8 x DRAIN_SECONDS and be gone by DRAIN_SECONDS + the serve_forever() poll interval + a
margin derived from the server's measured start-up time and latency. With drains of 1.0 s
and 3.5 s no fixed delay passes both: it would have to last 2.8 s and end by about 2.2 s.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator

from opslab.grading.common import CheckFailed, friendly
from opslab.grading.shutdown import POLL_SECONDS, Pace, http_get, learner_server, measure_pace

FLIP_SECONDS = 1.0  # how soon after SIGTERM /ready must say 503
STATUS_SECONDS = 1.0  # one probe's time-out
STILL_SERVING = 0.8  # the fraction of the drain by which the server must still answer
UNANSWERED = " (Not answered yet? The server has no SIGTERM handler.)"


@contextlib.contextmanager
def running(source: object, drain: float) -> Iterator[tuple[subprocess.Popen[bytes], str, Pace]]:
    """The learner's server on a free port (process, base URL, its pace); group killed on exit."""
    began = time.monotonic()
    with learner_server(source, f"{drain:g}") as (proc, port):
        pace = measure_pace(port, time.monotonic() - began, "/health")
        yield proc, f"http://127.0.0.1:{port}", pace


def status(url: str) -> int | str:
    """The HTTP status of GET url (on a new connection), or what happened when none came.

    A raw socket, sent at once: an HTTP client's set-up (its TLS context) takes long enough
    on a loaded machine to push a probe timed at 0.8 x the drain past its end.
    """
    address, _, path = url.removeprefix("http://").partition("/")
    outcome = http_get(int(address.rpartition(":")[2]), "/" + path, STATUS_SECONDS)
    if outcome == "ok":
        return 200
    if outcome.startswith("HTTP ") and outcome[5:].isdigit():
        return int(outcome[5:])
    return outcome.partition(":")[0]


def _hint(source: str) -> str:
    return "" if "signal." in source else UNANSWERED


def _until_not_ready(proc: subprocess.Popen[bytes], base: str, source: str) -> float:
    """Send SIGTERM; wait for /ready to answer 503; return when SIGTERM was sent."""
    for path in ("/health", "/ready"):
        if (got := status(base + path)) != 200:
            raise CheckFailed(f"Before SIGTERM, {path} should answer 200, got {got}.")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    seen: int | str = "nothing"
    while time.monotonic() - sent < FLIP_SECONDS:
        seen = status(base + "/ready")
        if seen == 503:
            return sent
        if not isinstance(seen, int):
            raise CheckFailed(
                f"Right after SIGTERM, /ready gave {seen}: the server stopped answering at once, "
                f"so the load balancer never saw it go unready.{_hint(source)} Hint: on SIGTERM "
                "set a draining flag and keep serving; stop the server only after the delay."
            )
        time.sleep(0.05)
    raise CheckFailed(
        f"{FLIP_SECONDS:g} s after SIGTERM, /ready still answered {seen}, not 503. Hint: the "
        "SIGTERM handler sets the draining flag that /ready reads."
    )


@friendly
def check_ready_drains(source: object, *, drain: float = 2.0) -> None:
    """After SIGTERM: /ready answers 503 within a second, /health still 200 (alive, draining)."""
    with running(source, drain) as (proc, base, _pace):
        _until_not_ready(proc, base, str(source))
        if (got := status(base + "/health")) != 200:
            raise CheckFailed(
                f"While draining, /health answered {got}: liveness must stay 200, or the "
                "orchestrator restarts a server that is only shutting down politely."
            )


@friendly
def check_drain_then_exit(
    source: object, *, drain: float = 2.0, bound: float | None = None
) -> None:
    """The server still answers at 0.8 x drain, then exits with code 0 by drain + margin.

    `bound` (default: the poll interval + the measured margin) is how long after the drain
    the process may take to exit.
    """
    with running(source, drain) as (proc, base, pace):
        bound = POLL_SECONDS + pace.margin if bound is None else bound
        sent = _until_not_ready(proc, base, str(source))
        time.sleep(max(0.0, sent + STILL_SERVING * drain - time.monotonic()))
        if proc.poll() is not None or status(base + "/health") != 200:
            raise CheckFailed(
                f"{STILL_SERVING * drain:.1f} s into a {drain:g} s drain the server no longer "
                "answered: it must keep serving for DRAIN_SECONDS (requests still arrive until "
                "the load balancer notices), whatever value it is given. Hint: sleep for the "
                "delay in another thread, then shut down."
            )
        try:
            proc.wait(timeout=max(0.0, sent + drain + bound - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                f"The server was still running {drain + bound:.1f} s after SIGTERM (drain "
                f"{drain:g} s): stop when the drain delay given as DRAIN_SECONDS ends, not after "
                "a fixed delay; the orchestrator would SIGKILL a server that lingers. Hint: "
                "after the delay call server.shutdown() (from a thread other than "
                "serve_forever's)."
            ) from None
        if proc.returncode != 0:
            raise CheckFailed(
                f"After the drain the server exited with code {proc.returncode}, not 0."
            )
