"""opslab.setup() and the package's public API."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import opslab
from opslab.pidfiles import ProcRecord, start_time, write_pidfile


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup() configures the `opslab` logger; put it back for the other tests."""
    logger = logging.getLogger("opslab")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def test_setup_stops_servers_left_by_a_killed_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as kernel:
        kernel_start = start_time(kernel.pid)
        kernel.kill()
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    record = ProcRecord(
        name="left-over",
        pid=orphan.pid,
        pgid=orphan.pid,
        start_time=start_time(orphan.pid),
        owner_pid=kernel.pid,
        owner_start_time=kernel_start,
        token="token",
        cmd=["sleep", "300"],
    )
    write_pidfile(record)

    info = opslab.setup()

    assert orphan.wait(timeout=5) == -15
    assert info.orphans_reaped == 1
    assert "strict mode off" in repr(info)
    assert repr(info).count("\n") == 0


def test_setup_reports_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSLAB_STRICT", "1")

    info = opslab.setup()

    assert info.strict
    assert "strict mode on" in repr(info)
    assert logging.getLogger("httpx").level == logging.WARNING


def test_every_public_name_is_exported() -> None:
    missing = [name for name in opslab.__all__ if not hasattr(opslab, name)]

    assert missing == []
    assert {"setup", "start_app", "Nginx", "Prometheus", "run_load", "require"} <= set(
        opslab.__all__
    )


def test_state_dir_is_private_to_the_user() -> None:
    path = opslab.state_dir()

    assert path.stat().st_uid == os.getuid()
