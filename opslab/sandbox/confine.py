"""The sandbox's walls: a user of its own, limits, a private network and file view, a sweep.

Each submission is graded by a judge process that first moves into a network namespace of its
own (only a loopback) and a mount namespace in which the course's answers (`solutions/`,
`tests/`, `.git`, built books, the submissions folder) are empty, and `/tmp` is private. Every
process that runs learner code is started under `prefix()`: resource limits (`prlimit`), then
an unprivileged uid that exists for this submission only (`setpriv`, no new privileges). The
learner's kernel is further wrapped in bubblewrap (`kernel_command`): its own PID namespace, a
read-only view of the system and the course's packages only, and size-limited tmpfs for HOME
and /tmp. At the end `sweep(uid)` kills every process of that uid, wherever it went.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 1_900_000_000  # far above any real account or subordinate-id range
SLOTS = 64  # each slot has two uids: UID_BASE + 2 * slot (kernel) and the next (servers)
SLOT_DIR = Path("/run/opslab-sandbox")
TOOLS = ("bwrap", "setpriv", "prlimit")
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_REC, MS_PRIVATE = 1, 0x4000, 1 << 18
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
HOME = "/home/learner"
VIEW = Path("/run/opslab-sandbox-view")  # in the judge's mount namespace: the course, readable
MS_BIND = 4096
SOURCES: dict[Path, Path] = {}  # a path the kernel reads -> where bubblewrap binds it from


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Memory and CPU are per process; processes per sandbox."""

    memory_bytes: int = 3 << 30
    processes: int = 128
    cpu_seconds: int = 300
    file_bytes: int = 64 << 20
    open_files: int = 512
    tmp_bytes: int = 256 << 20


@dataclass(frozen=True)
class Confinement:
    """The uids and limits of the submission being graded (set in the judge).

    The kernel runs as `uid`, the servers an answer starts as `uid + 1`: a fork bomb in a cell
    cannot use up the servers' process budget, and cell code cannot signal them.
    """

    uid: int
    limits: Limits

    @property
    def server_uid(self) -> int:
        return self.uid + 1


ACTIVE: Confinement | None = None  # set by the judge; None in a learner's own kernel


def unavailable() -> str | None:
    """Why this machine cannot sandbox learner code, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "grading runs learner code in a Linux sandbox; grade on Linux"
    if os.geteuid() != 0:
        return "grading needs root to give each submission a user of its own: run it with sudo"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install -y bubblewrap util-linux"
    return None


@contextlib.contextmanager
def uid_slot() -> Iterator[int]:
    """A uid no other grading on this machine is using (a lock file per slot), swept after."""
    SLOT_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    for slot in range(SLOTS):
        handle = os.open(SLOT_DIR / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        uid = UID_BASE + 2 * slot
        try:
            sweep(uid, uid + 1)  # a crashed earlier grading may have left something
            yield uid
        finally:
            sweep(uid, uid + 1)
            os.close(handle)
        return
    raise RuntimeError(f"all {SLOTS} sandbox slots are busy")


def sweep(*uids: int) -> int:
    """SIGKILL every process of these uids, wherever they went; how many rounds it took."""
    return sum(_sweep(uid) for uid in uids)


def _sweep(uid: int, rounds: int = 50) -> int:
    """SIGKILL every process of `uid` (a child that becomes `uid` and kills all it may)."""
    killed = 0
    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:  # the child: only `uid`'s processes can be signalled once we are `uid`
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
                os._exit(0)
            except ProcessLookupError:
                os._exit(1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return killed
        killed += 1
        time.sleep(0.02)
    return killed


def prefix(confinement: Confinement, uid: int | None = None) -> list[str]:
    """The command prefix that limits, then drops to the submission's uid (exec, same pid)."""
    lim, uid = confinement.limits, confinement.uid if uid is None else uid
    return [
        "prlimit", f"--as={lim.memory_bytes}", f"--nproc={lim.processes}",
        f"--cpu={lim.cpu_seconds}", f"--fsize={lim.file_bytes}",
        f"--nofile={lim.open_files}", "--core=0", "--",
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all", "--no-new-privs", "--",
    ]  # fmt: skip


def wrap(argv: Iterable[str]) -> list[str]:
    """`argv` confined when a submission is being graded, unchanged otherwise."""
    argv = [os.fspath(a) for a in argv]
    return argv if ACTIVE is None else prefix(ACTIVE, ACTIVE.server_uid) + argv


def hand_over(*paths: Path) -> None:
    """Give the submission's user the files a confined process needs (when grading)."""
    if ACTIVE is None:
        return
    for path in paths:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                uid = ACTIVE.server_uid
                os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
        os.chown(path, ACTIVE.server_uid, ACTIVE.server_uid, follow_symlinks=False)


def python_paths() -> list[Path]:
    """What the kernel must read: the interpreter's prefix (the venv) and the course packages."""
    import opslab
    import sample_app

    interpreter = Path(os.path.realpath(sys.executable)).parent.parent
    paths = {Path(sys.prefix), Path(sys.base_prefix), interpreter,
             Path(opslab.__file__).parent, Path(sample_app.__file__).parent}  # fmt: skip
    system = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64")
    return sorted(p for p in paths if not any(p.is_relative_to(s) for s in system))


def _view(confinement: Confinement, home: str) -> list[str]:
    """bubblewrap's file view: the system and the course read-only, a private /tmp."""
    tmp = str(confinement.limits.tmp_bytes)
    binds = [a for p in python_paths() for a in ("--ro-bind", str(SOURCES.get(p, p)), str(p))]
    system = [a for p in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64") for a in
              ("--ro-bind-try", p, p)]  # fmt: skip
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {"HOME": home, "TMPDIR": "/tmp", "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return [
        "bwrap", "--die-with-parent", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox", "--size", tmp, "--tmpfs", "/tmp", *system, *binds,
        "--dev", "/dev", "--clearenv", *[a for k, v in env.items() for a in ("--setenv", k, v)],
    ]  # fmt: skip


def kernel_command(confinement: Confinement) -> list[str]:
    """The learner kernel in bubblewrap: read-only system, own PID namespace, tmpfs home."""
    tmp = str(confinement.limits.tmp_bytes)
    return [
        *prefix(confinement), *_view(confinement, HOME), "--new-session", "--unshare-pid",
        "--proc", "/proc", "--size", tmp, "--tmpfs", HOME, "--chdir", HOME,
        "--", sys.executable, "-I", "-m", "opslab.sandbox.kernel",
    ]  # fmt: skip


def server_command(argv: Iterable[str], workdir: Path) -> list[str]:
    """A learner's server, confined like the kernel but in the judge's PID namespace: the
    check signals it by its real pid (`inner_pid`), since bubblewrap does not pass SIGTERM on.
    Unchanged when no submission is being graded."""
    argv = [os.fspath(a) for a in argv]
    if ACTIVE is None:
        return argv
    hand_over(workdir)
    for parent in workdir.parents:  # traversable (not listable) down to the work folder
        mode = parent.stat().st_mode
        if mode & 0o001:
            break
        parent.chmod(mode | 0o111)
    where = str(workdir)
    return [
        *prefix(ACTIVE, ACTIVE.server_uid), *_view(ACTIVE, where), "--ro-bind", "/proc", "/proc",
        "--bind", where, where, "--chdir", where, "--", *argv,
    ]  # fmt: skip


class ConfinedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A confined server: signals go to the server itself, not to bubblewrap around it.

    bubblewrap exits with its command's exit code, so `wait()` and `returncode` are the
    server's; `send_signal` (and `terminate`, `kill`) reach the server's real pid.
    """

    def send_signal(self, sig: int) -> None:
        target = inner_pid(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)


def inner_pid(pid: int, timeout: float = 10.0) -> int:
    """The command bubblewrap (`pid`) started: its only child. `pid` itself when not confined."""
    if ACTIVE is None:
        return pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.01)
    return pid


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _bind(libc: ctypes.CDLL, source: Path, target: Path) -> None:
    _check(libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND | MS_REC, None),
           f"bind {source} on {target}")  # fmt: skip


def enter_private_namespaces(hidden: Iterable[Path], tmp_bytes: int = 1 << 30) -> None:
    """Move this (single-threaded) process into its own network and mount namespaces.

    The network has only a loopback, up; `hidden` paths are covered with empty read-only
    tmpfs; /tmp and /dev/shm are private. The interpreter and the course packages
    are also bound under VIEW, a path the submission's user can traverse (they may live in
    /root or in a 0700 temp folder), and put back where they were if a private tmpfs covered
    them. Everything started later inherits this.
    """
    libc = _libc()
    needed = python_paths()
    # The judge itself reads the whole course (pyproject.toml, requirements: q1b's wheels).
    project = Path(__file__).resolve().parents[2]
    keep = [*needed, project] if (project / "pyproject.toml").is_file() else needed
    VIEW.mkdir(mode=0o755, exist_ok=True)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for path in hidden:  # first: the views bound below (recursively) keep them hidden
        if path.is_dir():
            _check(libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_RDONLY,
                              b"size=4k,mode=0555"), f"hide {path}")  # fmt: skip
    _check(libc.mount(b"tmpfs", os.fsencode(VIEW), b"tmpfs", 0, b"size=64k,mode=0755"), "view")
    for number, path in enumerate(keep):
        alias = VIEW / str(number)
        alias.mkdir(mode=0o755)
        _bind(libc, path, alias)
        SOURCES[path] = alias
    private = [p for p in ("/tmp", "/dev/shm") if os.path.isdir(p)]  # podman needs /var/tmp
    for path in private:
        options = f"size={tmp_bytes},mode=1777".encode()
        _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, options), f"private {path}")
    covered = [p for p in keep if any(p.is_relative_to(q) for q in private)]
    for path in covered:
        if any(path != q and path.is_relative_to(q) for q in covered):
            continue  # back already, with the folder that holds it (bound recursively)
        path.mkdir(parents=True, exist_ok=True)
        _bind(libc, SOURCES[path], path)
    loopback_up()


def loopback_up() -> None:
    """`ip link set lo up`, with two ioctls (no iproute2 needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def killpg(pid: int) -> None:
    """SIGKILL a process group, if it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
