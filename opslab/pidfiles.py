"""Pidfiles for every server the toolkit starts, so a later kernel can clean up after a dead one.

A notebook kernel that is killed (SIGKILL, OOM, a crashed laptop lid) cannot run its
`atexit` handlers. Its servers survive it and keep their ports. Each started process
therefore leaves a small JSON record under the state directory; `reap_orphans()` reads
them and stops the process groups whose owner is gone. It never kills a group it cannot
prove is ours: the leader's start time must match, or a member must carry our token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_ENV = "OPSLAB_PROC_TOKEN"
WORKDIR_PREFIX = "opslab-"
OWNER_FILE = ".owner"  # in a workdir: "PID START_TIME" of the process that made it
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcRecord:
    """What a pidfile records about one started process group."""

    name: str
    pid: int
    pgid: int
    start_time: int | None
    owner_pid: int
    owner_start_time: int | None
    token: str
    cmd: list[str]
    workdir: str = ""


def state_dir() -> Path:
    """The private directory for pidfiles: $OPSLAB_STATE_DIR, $XDG_RUNTIME_DIR or /tmp."""
    if custom := os.environ.get("OPSLAB_STATE_DIR"):
        path = Path(custom)
    elif runtime := os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(runtime) / "opslab" / "procs"
    else:
        path = Path(tempfile.gettempdir()) / f"opslab-{os.getuid()}" / "procs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # /tmp is shared: refuse a directory someone else created for us to write into.
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path} is not owned by this user; set OPSLAB_STATE_DIR")
    return path


def private_dir(name: str) -> Path:
    """A folder of this user's, under the private state directory, that keeps its name from
    one kernel to the next (so a re-run finds what a killed kernel left). Never a fixed path
    in /tmp: anyone can create that first, and read or swap what is written into it."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a plain folder name: {name!r}")
    path = state_dir() / "work" / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None if the process is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def pid_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (an exited process nobody has reaped)."""
    if not PROC.is_dir():
        return is_alive(pid, None)
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    if not PROC.is_dir():  # not Linux: we can only ask whether the group exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in PROC.iterdir():
        fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def has_token(pid: int, token: str) -> bool:
    """Whether the process's environment carries our per-process token."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_ENV}={token}".encode() in environ.split(b"\0")


def is_alive(pid: int, expected_start: int | None) -> bool:
    """Whether `pid` is still the very process that was recorded (not a reused pid)."""
    if expected_start is not None and PROC.is_dir():
        return start_time(pid) == expected_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_pidfile(record: ProcRecord) -> Path:
    """Record a started process group; returns the pidfile's path."""
    path = state_dir() / f"{record.owner_pid}-{record.pid}.json"
    path.write_text(json.dumps(asdict(record)))
    return path


def read_pidfiles(directory: Path | None = None) -> list[tuple[Path, ProcRecord]]:
    """Every readable pidfile in the state directory (or in another process's `directory`)."""
    found = []
    for path in sorted((directory or state_dir()).glob("*.json")):
        try:
            found.append((path, ProcRecord(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            log.warning("ignoring unreadable pidfile %s", path)
    return found


def _ours(record: ProcRecord) -> list[int]:
    """The group's live members, if we can prove the group is the one recorded."""
    if not PROC.is_dir():  # no start times or environments to check (macOS): never guess
        return []
    members = group_members(record.pgid)
    leader_matches = record.pid in members and is_alive(record.pid, record.start_time)
    if leader_matches or any(has_token(pid, record.token) for pid in members):
        return members
    return []


def kill_group(pgid: int, timeout: float = 3.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not group_members(pgid):
            return


def _remove_workdir(workdir: str) -> None:
    """Delete a dead owner's temp dir, but only one that is clearly a toolkit temp dir."""
    path = Path(workdir)
    in_tmp = path.parent == Path(tempfile.gettempdir()) and path.name.startswith(WORKDIR_PREFIX)
    ours = not path.is_symlink() and path.is_dir() and path.lstat().st_uid == os.getuid()
    if workdir and in_tmp and ours:
        shutil.rmtree(path, ignore_errors=True)


def mark_owner(workdir: Path) -> None:
    """Note in a toolkit temp dir which process made it: a later kernel can then remove it
    when that process died without running its `atexit` handlers (SIGKILL, OOM)."""
    me = os.getpid()
    (workdir / OWNER_FILE).write_text(f"{me} {start_time(me)}\n")


def remove_orphan_workdirs() -> list[Path]:
    """Delete this user's toolkit temp dirs whose maker is gone; returns what was removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*/{OWNER_FILE}"):
        try:
            pid, started = path.read_text().split()
            owner = int(pid), None if started == "None" else int(started)
        except (OSError, ValueError):
            continue  # half-written, or not ours to judge
        if not is_alive(*owner):
            _remove_workdir(str(path.parent))
            removed.append(path.parent)
    return removed


def reap_orphans() -> list[ProcRecord]:
    """Stop the process groups left behind by dead owners (and remove their temp dirs);
    returns what was stopped."""
    remove_orphan_workdirs()
    reaped = []
    for path, record in read_pidfiles():
        if is_alive(record.owner_pid, record.owner_start_time):
            continue
        if _ours(record):
            log.warning(
                "stopping orphaned %s (pgid %d, owner %d is gone)",
                record.name,
                record.pgid,
                record.owner_pid,
            )
            kill_group(record.pgid)
            reaped.append(record)
        _remove_workdir(record.workdir)
        path.unlink(missing_ok=True)
    return reaped
