"""The graceful-shutdown checks of review question 3b, with real server subprocesses."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opslab import grading

pytestmark = pytest.mark.slow

IGNORES_SIGTERM = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sock = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(60)
"""


def test_check_graceful_model_server_passes(master: dict[str, Any]) -> None:
    assert grading.check_graceful(master["server_source"], slow=1.0, requests=2) is None
    assert grading.check_idle_exit(master["server_source"]) is None


def test_check_graceful_given_server_fails(exercise: dict[str, Any]) -> None:
    failure = grading.check_graceful(exercise["server_source"])
    assert "did not complete" in repr(failure)
    assert "code -15" in repr(failure)


def test_check_idle_exit_server_ignoring_sigterm_is_cut_off() -> None:
    started = time.monotonic()
    assert "still running 0.5 s after SIGTERM" in repr(
        grading.check_idle_exit(IGNORES_SIGTERM, bound=0.5)
    )
    assert time.monotonic() - started < 5


def test_check_graceful_server_crashing_at_start_shows_output() -> None:
    assert "NameError" in repr(grading.check_graceful("undefined_name\n"))
