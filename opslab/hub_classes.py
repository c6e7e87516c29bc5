"""The hub's authenticator and spawner (`make hub`): a roster of learners, and each learner's
server as that Unix user inside cgroups that cap its memory, CPU and process count.

Loaded by the hub's config (opslab.hub writes it); learners never import this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pwd
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.auth import LocalAuthenticator
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer, Unicode

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "opslab-hub"
COURSE_DIR = "ops-lab"  # the clone in each learner's home (the nbgitpuller target)
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
# Each learner's server: the hub's config and the capacity measurement use these.
MEM_LIMIT = 2 * 2**30
CPU_LIMIT = 1.0
MAX_PIDS = 512
MAX_PASSWORD = 1024  # longer is refused before hashing: scrypt's cost grows with the input


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A roster entry: salt and scrypt hash, hex."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, entry: str) -> bool:
    """Whether `password` is the one `entry` was made from (constant time)."""
    try:
        kind, salt, digest = entry.split("$")
        expected = bytes.fromhex(digest)
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return False
    if kind != "scrypt" or len(password) > MAX_PASSWORD:
        return False
    given = hashlib.scrypt(password.encode(), salt=salt_bytes, **SCRYPT)
    return hmac.compare_digest(given, expected)


class RosterAuthenticator(LocalAuthenticator):
    """Names and scrypt hashes from a 0600 JSON file; for a real class use your identity
    provider instead (the instructor guide names the authenticators)."""

    roster_file = Unicode(help="JSON {name: scrypt entry}, readable by root only").tag(config=True)

    def _roster(self) -> dict[str, str]:
        path = Path(self.roster_file)
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others: chmod 600 it")
        return dict(json.loads(path.read_text()))

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        """The learner's name if the password matches the roster, else None."""
        name, password = data.get("username", ""), data.get("password", "")
        entry = self._roster().get(name)
        if entry is None or not password_matches(password, entry):
            return None
        return name

    def check_allowed(self, username: str, authentication: Any = None) -> bool:
        """Only the roster's learners get a server."""
        return username in self._roster()


def become(name: str) -> list[str]:
    """The command prefix that runs a command as the learner (root only; no namespaces)."""
    entry = pwd.getpwnam(name)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]


def cgroup_dirs(user: str, root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """The learner's cgroup folder per controller (v1) or the one folder (v2)."""
    if (root / "cgroup.controllers").is_file():
        return {"unified": root / CGROUP_NAME / user}
    return {c: root / c / CGROUP_NAME / user for c in ("memory", "cpu", "cpuacct", "pids")}


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def make_cgroups(user: str, mem_bytes: int, cpus: float, max_pids: int) -> dict[str, Path]:
    """Create the learner's cgroups with their limits; returns them."""
    dirs = cgroup_dirs(user)
    period = 100_000
    quota = str(max(int(cpus * period), 1000))
    if "unified" in dirs:
        parent = dirs["unified"].parent
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", "+memory +cpu +pids")
        dirs["unified"].mkdir(exist_ok=True)
        _write(dirs["unified"] / "memory.max", str(mem_bytes))
        _write(dirs["unified"] / "memory.swap.max", "0")
        _write(dirs["unified"] / "cpu.max", f"{quota} {period}")
        _write(dirs["unified"] / "pids.max", str(max_pids))
        return dirs
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    _write(dirs["memory"] / "memory.limit_in_bytes", str(mem_bytes))
    with contextlib.suppress(OSError):  # absent without swap accounting
        _write(dirs["memory"] / "memory.memsw.limit_in_bytes", str(mem_bytes))
    _write(dirs["cpu"] / "cpu.cfs_period_us", str(period))
    _write(dirs["cpu"] / "cpu.cfs_quota_us", quota)
    _write(dirs["pids"] / "pids.max", str(max_pids))
    return dirs


def members(dirs: dict[str, Path]) -> set[int]:
    """Every process in the learner's cgroups, however it detached (setsid, double fork)."""
    pids: set[int] = set()
    for path in dirs.values():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
    return pids


def kill_all(dirs: dict[str, Path], timeout: float = 5.0) -> set[int]:
    """SIGKILL everything in the cgroups until they are empty, then remove them; returns
    the pids that were still there (a cgroup cannot be escaped by a learner's process)."""
    found = members(dirs)
    deadline = time.monotonic() + timeout
    while (left := members(dirs)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for path in dirs.values():
        with contextlib.suppress(OSError):
            path.rmdir()
    return found


def usage(dirs: dict[str, Path]) -> dict[str, float]:
    """Peak memory (MB) and CPU time (s) the learner's processes used so far."""
    if "unified" in dirs:
        path = dirs["unified"]
        peak = int((path / "memory.peak").read_text())
        stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
        cpu = int(stat["usage_usec"]) / 1e6
    else:
        peak = int((dirs["memory"] / "memory.max_usage_in_bytes").read_text())
        cpu = int((dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
    return {"peak_mb": round(peak / 2**20, 1), "cpu_s": round(cpu, 2)}


def join_hook(dirs: dict[str, Path], then: Callable[[], None]) -> Callable[[], None]:
    """A preexec_fn: enter the cgroups (as root, before dropping to the learner), then `then`."""
    files = [str(path / "cgroup.procs") for path in dirs.values()]

    def hook() -> None:
        for name in files:  # only open/write in the child: no locks, no allocation-heavy code
            fd = os.open(name, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        then()

    return hook


# The learner's server is pid 1 of a PID namespace with its own /proc: `ps` shows a learner
# only their own processes, and when the server exits the kernel kills everything left in it.
# In its mount namespace /tmp and /dev/shm are the learner's own (tmpfs, charged to the
# learner's memory limit): no file, socket or squatted name in /tmp is shared with anyone.
# tini (in the host's namespace, the pid the hub watches) passes the hub's signals on; the
# shell mounts, as root, then setpriv becomes the learner for good.
TMPFS = "mount -t tmpfs -o nosuid,nodev,mode=1777,size={size} tmpfs {path}"
ENTER = " && ".join([
    "mount -t proc -o nosuid,nodev,noexec proc /proc",
    TMPFS.format(size="1g", path="/tmp"),
    TMPFS.format(size="256m", path="/dev/shm"),
    "exec setpriv --reuid={uid} --regid={gid} --init-groups --no-new-privs --"
    ' /bin/sh -c "exec $1"',
])  # fmt: skip


def namespace_cmd(uid: int, gid: int) -> list[str]:
    """The command prefix the joined server command is appended to (Spawner.shell_cmd)."""
    return ["unshare", "--pid", "--mount", "--propagation", "private", "--", "tini", "-s", "--",
            "/bin/sh", "-c", ENTER.format(uid=int(uid), gid=int(gid)), "sh"]  # fmt: skip


class LimitedSpawner(LocalProcessSpawner):
    """LocalProcessSpawner in cgroups and a PID namespace: `mem_limit`, `cpu_limit` and
    `max_pids` are enforced, and stopping the server stops everything the learner started."""

    max_pids = Integer(MAX_PIDS, help="Processes and threads a learner may run at once").tag(
        config=True
    )

    def _dirs(self) -> dict[str, Path]:
        return cgroup_dirs(self.user.name)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        """Enter fresh cgroups with this learner's limits and their home (still as root)."""
        mem = int(self.mem_limit or MEM_LIMIT)
        dirs = make_cgroups(name, mem, float(self.cpu_limit or CPU_LIMIT), self.max_pids)
        home = pwd.getpwnam(name).pw_dir
        return join_hook(dirs, lambda: os.chdir(home))

    async def start(self) -> Any:
        """Start the server as the learner, inside the namespace."""
        entry = pwd.getpwnam(self.user.name)
        self.shell_cmd = namespace_cmd(entry.pw_uid, entry.pw_gid)
        return await super().start()

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        """The learner's own toolkit (their clone) on the path; state under their home."""
        env = super().user_env(env)
        env["PYTHONPATH"] = str(Path(env["HOME"]) / COURSE_DIR)
        env.pop("OPSLAB_STATE_DIR", None)
        return env

    async def stop(self, now: bool = False) -> None:
        """Stop the server, then whatever it left in the learner's cgroups."""
        await super().stop(now=now)
        left = kill_all(self._dirs())
        if left:
            self.log.info("stopped %d leftover processes of %s", len(left), self.user.name)
