"""Pidfiles and reap_orphans with real process groups and a really dead owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from opslab.pidfiles import (
    TOKEN_ENV,
    ProcRecord,
    pid_running,
    private_dir,
    read_pidfiles,
    reap_orphans,
    start_time,
    write_pidfile,
)
from opslab.procs import ManagedProcess


@pytest.fixture
def group() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A sleeping process group of our own (not a ManagedProcess) carrying a token."""
    token = uuid.uuid4().hex
    env = {**os.environ, TOKEN_ENV: token}
    proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    yield proc, token
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def dead_owner() -> tuple[int, int | None]:
    """The pid and start time of a process that has exited (a killed kernel)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]) as owner:
        recorded = (owner.pid, start_time(owner.pid))
        owner.kill()
    return recorded


def _record(proc: subprocess.Popen[bytes], token: str, owner: tuple[int, int | None]) -> ProcRecord:
    return ProcRecord(
        name="orphan",
        pid=proc.pid,
        pgid=proc.pid,
        start_time=start_time(proc.pid),
        owner_pid=owner[0],
        owner_start_time=owner[1],
        token=token,
        cmd=["sleep", "300"],
    )


def _gone(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_reap_orphans_kills_group_whose_owner_is_dead(
    group: tuple[subprocess.Popen[bytes], str], dead_owner: tuple[int, int | None]
) -> None:
    proc, token = group
    workdir = Path(tempfile.mkdtemp(prefix="opslab-orphan-"))
    record = ProcRecord(**{**_record(proc, token, dead_owner).__dict__, "workdir": str(workdir)})
    pidfile = write_pidfile(record)

    reaped = reap_orphans()

    assert [r.pid for r in reaped] == [proc.pid]
    assert _gone(proc)
    assert not pidfile.exists()
    assert not workdir.exists()


def test_reap_orphans_leaves_group_whose_owner_is_alive(
    group: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, token = group
    me = (os.getpid(), start_time(os.getpid()))
    pidfile = write_pidfile(_record(proc, token, me))

    assert reap_orphans() == []

    assert proc.poll() is None
    assert pidfile.exists()


def test_reap_orphans_never_kills_a_group_that_is_not_ours(
    group: tuple[subprocess.Popen[bytes], str], dead_owner: tuple[int, int | None]
) -> None:
    proc, _token = group
    # What a recycled pid looks like: another start time, and none of our token.
    record = _record(proc, "someone-elses-token", dead_owner)
    stale = ProcRecord(**{**record.__dict__, "start_time": (record.start_time or 0) + 12345})
    pidfile = write_pidfile(stale)

    assert reap_orphans() == []

    time.sleep(0.2)
    assert proc.poll() is None
    assert not pidfile.exists()  # the stale record is dropped


def test_managed_process_writes_pidfile_and_stop_removes_it(private_state_dir: Path) -> None:
    proc = ManagedProcess(["sleep", "300"], name="t-pidfile").start()
    try:
        [(path, record)] = read_pidfiles()
        assert record.pid == proc.pid
        assert record.owner_pid == os.getpid()
        assert record.cmd == ["sleep", "300"]
        assert path.parent == private_state_dir
        assert json.loads(path.read_text())["name"] == "t-pidfile"
    finally:
        proc.stop()
    assert read_pidfiles() == []
    assert proc.pid is not None
    assert not pid_running(proc.pid)


KILLED_AFTER_STOP = """
import os, signal
from opslab.procs import ManagedProcess
proc = ManagedProcess(["sleep", "300"], name="stopped-then-killed").start()
proc.stop()  # its pidfile goes now; its folder only at exit, which never comes:
print(proc.workdir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_reap_orphans_removes_folder_of_owner_killed_after_stop() -> None:
    owner = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_STOP], capture_output=True, text=True, timeout=60
    )
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    workdir = Path(owner.stdout.strip())
    assert workdir.is_dir()  # no pidfile points at it any more

    reap_orphans()

    assert not workdir.exists()


def test_reap_orphans_keeps_folder_of_live_owner() -> None:
    proc = ManagedProcess(["sleep", "300"], name="live-owner")
    try:
        reap_orphans()
        assert proc.workdir.is_dir()
    finally:
        proc.stop()


def test_reap_orphans_ignores_owner_file_in_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / ".owner").write_text("999999999 None\n")  # no such process
    link = Path(tempfile.gettempdir()) / f"opslab-link-{uuid.uuid4().hex}"
    link.symlink_to(target)
    try:
        reap_orphans()
        assert (target / ".owner").exists()
    finally:
        link.unlink()


def test_private_dir_is_the_users_own_and_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSLAB_STATE_DIR", str(tmp_path / "state"))
    first = private_dir("07-blue-green")
    assert first == private_dir("07-blue-green")
    assert first.stat().st_mode & 0o077 == 0
    assert first.is_relative_to(tmp_path / "state")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_private_dir_refuses_a_path(name: str) -> None:
    with pytest.raises(ValueError, match="plain folder name"):
        private_dir(name)
