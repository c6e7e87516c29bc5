"""Releases on disk and app instances as detached process groups.

A release is a directory with the app installed (`pip install --no-deps --target`) and a
`release.json` naming its dependency directory and interpreter. Dependencies are shared
between releases that declare the same ones (keyed by a hash of the wheel's
`Requires-Dist`), so a release installs in about a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reaped on stop


@dataclass
class Instance:
    """One running app instance: which release, where it listens, its process group."""

    release: str
    path: str
    port: int
    pid: int
    log: str
    instance_id: str
    started: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def install_release(
    wheel: str | os.PathLike[str],
    root: str | os.PathLike[str],
    name: str,
    *,
    env: dict[str, str] | None = None,
) -> Path:
    """Install `wheel` as release `name` under `root`; `env`: this release's own settings."""
    wheel, root = Path(wheel), Path(root)
    deps = root / "deps" / _requirements_key(wheel)
    if not (deps / ".complete").is_file():
        shutil.rmtree(deps, ignore_errors=True)
        _pip_target(deps, wheel)
        for app_dir in [deps / "sample_app", *deps.glob("opslab_sample_app-*.dist-info")]:
            shutil.rmtree(app_dir)  # the app itself lives in each release
        (deps / ".complete").touch()
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    _pip_target(target, wheel, "--no-deps")
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    info = {"name": name, "wheel": wheel.name, "deps": str(deps), "python": python}
    (target / RELEASE_FILE).write_text(json.dumps({**info, "env": env or {}}, indent=2))
    return target


def read_release(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The release.json of an installed release."""
    return dict(json.loads((Path(path) / RELEASE_FILE).read_text()))


def start_instance(
    path: str | os.PathLike[str], *, port: int, env: dict[str, str], log_dir: Path
) -> Instance:
    """Start the release at `path` on `port` as its own process group (it outlives us)."""
    release = read_release(path)
    name = release["name"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, **env, **release["env"]}
    # Unique even when a release is deployed again: "v2@41523" (X-Instance names it).
    full_env["INSTANCE_ID"] = f"{name}@{port}"
    full_env["PYTHONPATH"] = os.pathsep.join([str(Path(path).resolve()), release["deps"]])
    cmd = [release["python"], "-m", "sample_app", "serve", "--host", "127.0.0.1"]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            env=full_env,
            cwd=path,  # `-m` puts the working directory first on sys.path
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: signals reach uvicorn's workers too
        )
    _CHILDREN[proc.pid] = proc
    return Instance(name, str(path), port, proc.pid, str(log_path), full_env["INSTANCE_ID"])


def _reap(pid: int) -> None:
    """Collect a child of ours that has exited (otherwise it lingers as a zombie)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def alive(pid: int) -> bool:
    """Whether the process group `pid` still has a member."""
    _reap(pid)
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def log_tail(instance: Instance, lines: int = 8) -> str:
    """The last lines of the instance's log."""
    path = Path(instance.log)
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""
    )


def wait_ready(instance: Instance, *, timeout: float) -> str | None:
    """Poll `/ready` until 200; None when ready, else why not (exited, or still not ready)."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if not alive(instance.pid):
            return f"exited before it was ready; its log ends with:\n{log_tail(instance)}"
        try:
            with urllib.request.urlopen(f"{instance.url}/ready", timeout=2) as response:
                if response.status == 200:
                    return None
        except urllib.error.HTTPError as error:
            last = f"/ready answered {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last = f"no answer ({error})"
        time.sleep(0.1)
    return f"not ready after {timeout:g}s: {last}"


def get_json(url: str, *, timeout: float = 5.0, context: Any = None) -> tuple[dict[str, Any], Any]:
    """GET `url`; (JSON body, response headers)."""
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        return json.loads(response.read()), response.headers


def stop_instance(pid: int, *, timeout: float = 15.0) -> str:
    """SIGTERM the group (the app drains, then exits); SIGKILL after `timeout`. How it ended."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(pid)
        return "already stopped"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return "stopped (SIGTERM)"
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)
    return f"killed (SIGKILL after {timeout:g}s)"


def running_from(root: str | os.PathLike[str]) -> list[int]:
    """Process groups whose leader runs inside `root` (a releases directory); Linux only.

    Every instance runs with its release directory as working directory, so this finds
    instances whatever state file knew of them, e.g. after a crashed deploy.
    """
    root, found = Path(root).resolve(), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            leader = os.getpgid(int(entry.name)) == int(entry.name)
        except OSError:
            continue
        if leader and cwd.is_relative_to(root):
            found.append(int(entry.name))
    return found


def stop_all(root: str | os.PathLike[str], *, timeout: float = 15.0) -> dict[int, str]:
    """Stop every instance running from a release under `root`: {pid: how it ended}."""
    return {pid: stop_instance(pid, timeout=timeout) for pid in running_from(root)}
