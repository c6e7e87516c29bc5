"""Releases on disk and app instances as detached process groups on Unix sockets.

A release is a directory with the app installed (`pip install --no-deps --target`) and a
`release.json` naming its dependency directory and interpreter. Dependencies are shared
between releases that declare the same ones (keyed by a hash of the wheel's
`Requires-Dist`), so a release installs in about a second.

An instance listens on its own Unix socket in the deploy state's `sockets/` directory
(mode 0700: only the operator, and nginx's workers running as the operator, can connect).
It is known by its PID *and* the kernel's start time of that PID, so a PID reused after
a reboot or a crash is never mistaken for it, nor signalled.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
# A release name is one path component: no "/", "..", "." or empty name can leave the root.
RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({"deps"})
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What an instance inherits from the operator's environment; everything else it is given.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reaped on stop


class DeployError(RuntimeError):
    """A deploy step failed; the live release was left serving."""


@dataclass
class Instance:
    """One running app instance: which release, its socket, its process group."""

    release: str
    path: str
    socket: str
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: tells this process from a later one
    log: str
    instance_id: str
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically to `path`, readable by its owner only (0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # an older file of that name kept its mode
        file.write(text)
    os.replace(tmp, path)


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """`KEY=VALUE` lines (blank lines and `#` comments skipped) -> {KEY: VALUE}."""
    values: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not ENV_NAME.fullmatch(key.strip()):
            raise DeployError(f"{path}:{number}: not KEY=VALUE (the value is not shown)")
        values[key.strip()] = value.strip()
    return values


def env_from_args(names: list[str], env_files: list[str]) -> dict[str, str]:
    """Settings from `--env-file FILE`s and `--env NAME`s (taken from our environment).

    A value on the command line (`--env NAME=VALUE`) is refused: every user of the machine
    can read it in `ps`.
    """
    values: dict[str, str] = {}
    for path in env_files:
        values.update(read_env_file(path))
    for name in names:
        if "=" in name:
            key = name.split("=", 1)[0]
            raise DeployError(
                f"--env {key}=...: a value on the command line is visible to everyone in "
                f"`ps`. Put it in an --env-file (mode 0600), or export {key} and pass "
                f"--env {key}"
            )
        if name not in os.environ:
            raise DeployError(f"--env {name}: {name} is not set in this environment")
        values[name] = os.environ[name]
    return values


def _requirements_key(wheel: Path) -> str:
    """A hash of the wheel's declared dependencies: same key, same dependency directory."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    requires = sorted(line for line in lines if line.startswith("Requires-Dist:"))
    return hashlib.sha256("\n".join(requires).encode()).hexdigest()[:16]


def _pip_target(target: Path, wheel: Path, *extra: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(target), *extra, str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def release_dir(root: str | os.PathLike[str], name: str) -> Path:
    """`root/name`, for a name that is one safe path component, or DeployError."""
    if not RELEASE_NAME.fullmatch(name) or name in RESERVED_NAMES or set(name) == {"."}:
        raise DeployError(
            f"release name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or "
            f"'-', starting with a letter or digit (not {sorted(RESERVED_NAMES)})"
        )
    return Path(root) / name


def install_release(
    wheel: str | os.PathLike[str],
    root: str | os.PathLike[str],
    name: str,
    *,
    env: dict[str, str] | None = None,
) -> Path:
    """Install `wheel` as release `name` under `root`; `env`: this release's own settings.

    A release is never overwritten: the live one may be running from that directory.
    """
    wheel, root = Path(wheel), Path(root)
    target = release_dir(root, name)
    if target.exists():
        raise DeployError(f"release {name} already exists in {root}: give the new one a new name")
    root.mkdir(parents=True, exist_ok=True)
    deps = root / "deps" / _requirements_key(wheel)
    if not (deps / ".complete").is_file():
        shutil.rmtree(deps, ignore_errors=True)
        _pip_target(deps, wheel)
        for app_dir in [deps / "sample_app", *deps.glob("opslab_sample_app-*.dist-info")]:
            shutil.rmtree(app_dir)  # the app itself lives in each release
        (deps / ".complete").touch()
    _pip_target(target, wheel, "--no-deps")
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    info = {"name": name, "wheel": wheel.name, "deps": str(deps), "python": python}
    write_private(target / RELEASE_FILE, json.dumps({**info, "env": env or {}}, indent=2))
    return target


def read_release(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The release.json of an installed release."""
    return dict(json.loads((Path(path) / RELEASE_FILE).read_text()))


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # field 22; the name may hold ") "


def start_instance(
    path: str | os.PathLike[str],
    *,
    sockets: Path,
    env: dict[str, str],
    log_dir: Path,
    sock: Path | None = None,
) -> Instance:
    """Start the release at `path` on a new socket in `sockets` (or on `sock`) as its own
    process group."""
    release = read_release(path)
    name = release["name"]
    token = os.urandom(3).hex()
    sock = sock or sockets / f"{token}.sock"
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{token}.log"
    handover_path(sock).unlink(missing_ok=True)  # left by an earlier process on this path
    inherited = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    full_env = {
        **inherited,
        # Only processes that can enter the 0700 socket directory reach the app: the
        # proxy's X-Forwarded-For and -Proto are to be believed (the app sees no peer IP).
        "FORWARDED_ALLOW_IPS": "*",
        **env,
        **release["env"],
        # Unique even when a release is deployed again: "v2@3fa9c1" (X-Instance names it).
        "INSTANCE_ID": f"{name}@{token}",
        "HANDOVER_FILE": str(handover_path(sock)),
        "PYTHONPATH": os.pathsep.join([str(Path(path).resolve()), release["deps"]]),
    }
    cmd = [release["python"], "-m", "sample_app", "serve", "--uds", str(sock)]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            cwd=path,  # `-m` puts the working directory first on sys.path
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: signals reach uvicorn's workers too
        )
    _CHILDREN[proc.pid] = proc
    ticks = start_ticks(proc.pid) or 0
    return Instance(
        name, str(path), str(sock), proc.pid, ticks, str(log_path), full_env["INSTANCE_ID"]
    )


def handover_path(sock: str | Path) -> Path:
    """The file whose existence tells the instance on `sock` that it was replaced."""
    return Path(sock).with_suffix(".handover")


def _reap(pid: int) -> None:
    """Collect a child of ours that has exited (otherwise it lingers as a zombie)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def is_ours(instance: Instance) -> bool:
    """Whether `instance.pid` is still the process we started (same start time, own group)."""
    _reap(instance.pid)
    if start_ticks(instance.pid) != instance.start_ticks:
        return False  # gone, or the PID now belongs to another process
    try:
        return os.getpgid(instance.pid) == instance.pid
    except ProcessLookupError:
        return False


def alive(instance: Instance) -> bool:
    """Whether the instance's process (its group leader) still runs (zombies do not)."""
    if not is_ours(instance):
        return False
    try:
        state = Path(f"/proc/{instance.pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def log_tail(instance: Instance, lines: int = 8) -> str:
    """The last lines of the instance's log."""
    path = Path(instance.log)
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""
    )


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (the standard library only speaks TCP)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def request(sock: str, path: str, *, timeout: float = 5.0) -> tuple[int, Any, bytes]:
    """GET `path` from the app on socket `sock`: (status, headers, body)."""
    conn = _UnixConnection(sock, timeout)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def get_json(sock: str, path: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The JSON body of GET `path` on socket `sock`; DeployError unless it is a 200."""
    status, _headers, body = request(sock, path, timeout=timeout)
    if status != 200:
        raise DeployError(f"GET {path} answered {status}")
    return dict(json.loads(body))


def wait_ready(instance: Instance, *, timeout: float) -> str | None:
    """Poll `/ready` until 200; None when ready, else why not (exited, or still not ready)."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if not alive(instance):
            return f"exited before it was ready; its log ends with:\n{log_tail(instance)}"
        try:
            status, _headers, _body = request(instance.socket, "/ready", timeout=2)
            if status == 200:
                return None
            last = f"/ready answered {status}"
        except OSError as error:
            last = f"no answer ({error})"
        time.sleep(0.1)
    return f"not ready after {timeout:g}s: {last}"


def stop_instance(instance: Instance, *, timeout: float = 15.0) -> str:
    """SIGTERM the group (the app drains, then exits); SIGKILL after `timeout`. How it ended.

    Signals only the process this instance started: a PID now used by another process
    (after a reboot, or reused) is left alone.
    """
    if not is_ours(instance):  # its files are left too: we cannot tell whose they are now
        if start_ticks(instance.pid) is None:
            return "already exited"
        return f"not running (PID {instance.pid} now belongs to another process: left alone)"
    os.killpg(instance.pid, signal.SIGTERM)
    outcome = f"killed (SIGKILL after {timeout:g}s)"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(instance):
            outcome = "stopped (SIGTERM)"
            break
        time.sleep(0.05)
    else:
        if is_ours(instance):
            os.killpg(instance.pid, signal.SIGKILL)
        while alive(instance):
            time.sleep(0.05)
    _reap(instance.pid)
    _remove_socket(instance)
    return outcome


def _remove_socket(instance: Instance) -> None:
    """uvicorn leaves its socket file behind when it exits."""
    if instance.socket:
        Path(instance.socket).unlink(missing_ok=True)
        handover_path(instance.socket).unlink(missing_ok=True)


def _serving_from(pid: int, root: Path) -> Path | None:
    """The release directory under `root` that process `pid` serves, if it is an app
    instance: a group leader running `python -m sample_app serve` in `root/<release>`."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(proc / "cwd"))
        leader = os.getpgid(pid) == pid
    except OSError:
        return None
    is_app = argv[1:4] == [b"-m", b"sample_app", b"serve"]
    if leader and is_app and cwd.parent == root and (cwd / RELEASE_FILE).is_file():
        return cwd
    return None


def running_from(root: str | os.PathLike[str]) -> list[int]:
    """App instances running from a release under `root` (a releases directory); Linux.

    Finds instances whatever state file knew of them, e.g. after a crashed deploy; an
    operator's shell in a release directory is not an instance and is never listed.
    """
    root = Path(root).resolve()
    return sorted(
        int(entry.name)
        for entry in Path("/proc").glob("[0-9]*")
        if _serving_from(int(entry.name), root)
    )


def stop_all(root: str | os.PathLike[str], *, timeout: float = 15.0) -> dict[int, str]:
    """Stop every instance running from a release under `root`: {pid: how it ended}."""
    stopped = {}
    for pid in running_from(root):
        found = Instance("?", "", "", pid, start_ticks(pid) or -1, "", "?")
        stopped[pid] = stop_instance(found, timeout=timeout)
    return stopped
