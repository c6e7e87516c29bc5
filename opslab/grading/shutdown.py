"""Checks for review question 3: the learner's server, run as a subprocess, shuts down gracefully.

The server is the learner's Python source; it must listen on 127.0.0.1 at the port given as
its first argument and answer `GET /slow?seconds=S` after S seconds. The check sends slow
requests, then SIGTERM, and requires every request to complete and the process to exit in
time. The process (and anything it started) is always killed at the end.
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
from pathlib import Path

import httpx

from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.procs import free_port
from opslab.sandbox import confine

START_SECONDS = 10.0
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


def _get(url: str, timeout: float, results: list[str]) -> None:
    try:
        response = httpx.get(url, timeout=timeout)
        results.append("ok" if response.status_code == 200 else f"HTTP {response.status_code}")
    except httpx.HTTPError as exc:
        results.append(f"{type(exc).__name__}: {exc}".strip())


def _stop_within(proc: subprocess.Popen[bytes], bound: float) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"The server was still running {bound:g} s after SIGTERM (the orchestrator would "
            "now SIGKILL it). Hint: make serve_forever() return, then close the server."
        ) from None
    return time.monotonic() - started


@friendly
def check_graceful(
    source: object, *, slow: float = 1.0, requests: int = 1, bound: float = 5.0
) -> None:
    """Requests in flight at SIGTERM complete, and the server exits within slow + bound."""
    with learner_server(source) as (proc, port):
        results: list[str] = []
        url = f"http://127.0.0.1:{port}/slow?seconds={slow}"
        threads = [
            threading.Thread(target=_get, args=(url, slow + bound, results), daemon=True)
            for _ in range(requests)
        ]
        for thread in threads:
            thread.start()
        time.sleep(min(0.5, slow / 2))  # the requests are now in the server's hands
        _stop_within(proc, slow + bound)
        for thread in threads:
            thread.join(slow + bound)
        failed = [r for r in results if r != "ok"] + ["no answer"] * (requests - len(results))
        if failed:
            hint = "" if "signal" in source else UNANSWERED
            raise CheckFailed(
                f"{len(failed)} of {requests} request(s) in flight at SIGTERM did not complete: "
                f"{failed[0].rstrip('.')}. The server exited with code {proc.returncode}.{hint} "
                "Hint: handle SIGTERM by stopping the accept loop, then wait for requests in "
                "progress."
            )


@friendly
def check_idle_exit(source: object, *, bound: float = 2.0) -> None:
    """With nothing in flight, SIGTERM ends the server quickly and with exit code 0."""
    with learner_server(source) as (proc, _port):
        _stop_within(proc, bound)
        if proc.returncode != 0:
            raise CheckFailed(
                f"After SIGTERM the server exited with code {proc.returncode}, not 0: a stop "
                "the server handled should end normally."
            )
