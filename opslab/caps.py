"""Capability checks: which system tools this machine has, and what to do about missing ones.

A notebook checks its tools once, `HAVE_NGINX = require("nginx")`, and each cell that needs
one starts with `if needs(HAVE_NGINX, shows="what the cell shows"):`. Without nginx the learner
gets the exact install command once, and every skipped cell says what it would have shown and
why; in strict mode (`OPSLAB_STRICT=1`, what CI sets) a missing tool is an error, so nothing is
skipped at all.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+~][\w.]+)?")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")  # nginx lives here; not on a user's PATH
BROTLI_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so")
APT_ALL = (
    "sudo apt-get install -y nginx libnginx-mod-http-brotli-filter prometheus podman runc "
    "docker.io wrk"
)
APT = {
    "nginx": "nginx",
    "nginx-brotli": "nginx libnginx-mod-http-brotli-filter",
    "prometheus": "prometheus",
    "container-engine": "podman runc docker.io",
    "podman": "podman runc",
    "docker-engine": "docker.io",
    "node": "nodejs npm",
    "git": "git",
    "wrk": "wrk",
}
BREW = {
    "nginx": "brew install nginx",
    "nginx-brotli": "brew's nginx has no Brotli module: the Brotli cells are skipped on macOS",
    "prometheus": "brew install prometheus",
    "container-engine": "brew install podman && podman machine init && podman machine start",
    "podman": "brew install podman && podman machine init && podman machine start",
    "docker-engine": "install Docker Desktop (brew install --cask docker) and start it",
    "node": "brew install node",
    "git": "brew install git",
    "wrk": "brew install wrk",
}


class MissingCapability(RuntimeError):  # noqa: N818 - the name notebooks catch
    """A tool the notebook needs is not installed (raised in strict mode)."""


@dataclass(frozen=True)
class Capability:
    """The outcome of one check."""

    name: str
    available: bool
    version: str | None
    detail: str
    install_hint: str


def strict_mode() -> bool:
    """Whether OPSLAB_STRICT is set to a true value (CI: missing tools fail, never skip)."""
    return os.environ.get("OPSLAB_STRICT", "").strip().lower() in {"1", "true", "yes", "on"}


# Tools to treat as not installed, e.g. OPSLAB_MISSING_TOOLS=nginx,prometheus: how a
# learner (or a test) sees what a section does without them, on a machine that has them.
MISSING_TOOLS_VAR = "OPSLAB_MISSING_TOOLS"


def hidden_tools() -> set[str]:
    """The binaries OPSLAB_MISSING_TOOLS names."""
    return {t.strip() for t in os.environ.get(MISSING_TOOLS_VAR, "").split(",") if t.strip()}


def find_binary(name: str) -> str | None:
    """The executable's path on the learner's PATH, then in the sbin directories (nginx is in
    /usr/sbin, often not on a user's PATH); None when OPSLAB_MISSING_TOOLS names it, the one
    way to hide a tool that PATH cannot hide."""
    if name in hidden_tools():
        return None
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def tool_version(cmd: list[str]) -> str | None:
    """The version number a `--version` style command prints (stdout or stderr), e.g. 1.22.1."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = VERSION_RE.search(done.stdout + done.stderr)
    return found.group(0) if found else None


# Set by the class hub (opslab.hub) in every learner's server: there, what is missing is not
# the learner's to install.
ON_HUB_VAR = "OPSLAB_ON_HUB"
ENGINE_CAPABILITIES = ("podman", "docker-engine", "container-engine")
ON_HUB_ENGINE_HINT = (
    "nothing to install: the class hub gives no container engine (an engine shared by a class "
    "is root on the machine for every learner). Run section 02's container cells on your own "
    "machine (`make lab`); the rest of the course runs here."
)


def install_hint(name: str) -> str:
    """How to install what `name` needs, for this platform (on the class hub: why it is not
    there, for a container engine)."""
    if name in ENGINE_CAPABILITIES and os.environ.get(ON_HUB_VAR) == "1":
        return ON_HUB_ENGINE_HINT
    mac = f"macOS: {BREW[name]}"
    apt = f"Debian/Ubuntu: sudo apt-get install -y {APT[name]}"
    first, second = (mac, apt) if platform.system() == "Darwin" else (apt, mac)
    return f"{first}\n{second}\nor everything at once: make system-deps ({APT_ALL})"


def _binary_check(name: str, binary: str, version_args: list[str]) -> Capability:
    path = find_binary(binary)
    if path is None:
        return Capability(name, False, None, f"`{binary}` not found", install_hint(name))
    return Capability(name, True, tool_version([path, *version_args]), path, install_hint(name))


def _check_brotli() -> Capability:
    nginx = _binary_check("nginx-brotli", "nginx", ["-v"])
    if not nginx.available:
        return nginx
    if not BROTLI_MODULE.is_file():
        return Capability(nginx.name, False, None, f"{BROTLI_MODULE} missing", nginx.install_hint)
    return Capability(nginx.name, True, nginx.version, str(BROTLI_MODULE), nginx.install_hint)


CHECKOV_HINT = (
    "`make setup` installs it into a venv of its own (~/.cache/opslab/checkov-venv, about 20 s; "
    "it needs PyPI once)"
)
CHECKOV_ON_HUB_HINT = (
    "nothing to install: the class hub has no checkov (only the one cell that runs it skips). "
    "On your own machine `make setup` installs it."
)


def _check_checkov() -> Capability:
    """checkov, in the venv `opslab.k8s` installs it into (never into the course's .venv)."""
    from opslab.k8s import CHECKOV_VENV

    binary = CHECKOV_VENV / "bin" / "checkov"
    hint = CHECKOV_ON_HUB_HINT if os.environ.get(ON_HUB_VAR) == "1" else CHECKOV_HINT
    if "checkov" in hidden_tools() or not binary.is_file():
        return Capability("checkov", False, None, f"{binary} not found", hint)
    return Capability("checkov", True, tool_version([str(binary), "--version"]), str(binary),
                      hint)  # fmt: skip


def _docker_socket() -> str | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _docker_daemon_reachable() -> bool:
    path = _docker_socket()
    if path is None or not Path(path).exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


ENGINE_ENV = "OPSLAB_ENGINE"
ENGINES = ("docker", "podman")


def wanted_engine() -> str | None:
    """`OPSLAB_ENGINE` ("docker" or "podman"), None when unset (take what is there)."""
    wanted = os.environ.get(ENGINE_ENV, "").strip().lower() or None
    if wanted not in (None, *ENGINES):
        raise ValueError(f"{ENGINE_ENV}={wanted!r}: use one of {', '.join(ENGINES)} or unset it")
    return wanted


def engine_route(kind: str | None = None) -> str | None:
    """How the engine `kind` (else OPSLAB_ENGINE, else the first found) is reached; starts nothing.

    "daemon": a Docker daemon that already runs (DOCKER_HOST or /var/run/docker.sock);
    "podman": podman (its API service is started per kernel); "dockerd": a private dockerd
    the course starts (root only); None: not available. Unset, they are tried in that order.
    The one place that decides: `opslab.containers.engine()`, q1b's grader and the
    capability checks all ask here.
    """
    kind = kind or wanted_engine()
    docker = find_binary("docker")
    if kind != "podman" and docker and _docker_daemon_reachable():
        return "daemon"
    if kind in (None, "podman") and find_binary("podman"):
        return "podman"
    if kind in (None, "docker") and docker and find_binary("dockerd") and os.geteuid() == 0:
        return "dockerd"
    return None


def _check_docker_engine() -> Capability:
    """Docker Engine: a daemon already reachable, or dockerd that the course can start (root)."""
    name, hint = "docker-engine", install_hint("docker-engine")
    route, docker, dockerd = engine_route("docker"), find_binary("docker"), find_binary("dockerd")
    if route == "daemon" and docker:
        return Capability(name, True, tool_version([docker, "--version"]), "docker daemon", hint)
    if route == "dockerd" and dockerd:
        version = tool_version([dockerd, "--version"])
        return Capability(name, True, version, f"private dockerd ({dockerd})", hint)
    why = "dockerd needs root here" if dockerd else "no dockerd (Debian: docker.io)"
    return Capability(name, False, None, f"no Docker daemon reachable, and {why}", hint)


def _check_container_engine() -> Capability:
    """The engine `opslab.containers.engine()` would use (`engine_route()`)."""
    route, hint = engine_route(), install_hint("container-engine")
    if route is None:
        detail = f"{_check_docker_engine().detail}; podman: not found"
        if wanted := wanted_engine():
            detail = f"{ENGINE_ENV}={wanted}, which is not available"
        return Capability("container-engine", False, None, detail, hint)
    found = _check_docker_engine() if route != "podman" else _check_podman()
    return Capability("container-engine", True, found.version, found.detail, hint)


def _check_podman() -> Capability:
    return _binary_check("podman", "podman", ["--version"])


CHECKS: dict[str, Callable[[], Capability]] = {
    "nginx": lambda: _binary_check("nginx", "nginx", ["-v"]),
    "nginx-brotli": _check_brotli,
    "prometheus": lambda: _binary_check("prometheus", "prometheus", ["--version"]),
    "container-engine": _check_container_engine,
    "podman": _check_podman,
    "docker-engine": _check_docker_engine,
    "node": lambda: _binary_check("node", "node", ["--version"]),
    "git": lambda: _binary_check("git", "git", ["--version"]),
    "wrk": lambda: _binary_check("wrk", "wrk", ["--version"]),
    "checkov": _check_checkov,
}


def check(name: str) -> Capability:
    """Check one capability by name (see CHECKS for the names)."""
    if name not in CHECKS:
        raise ValueError(f"unknown capability {name!r}; known: {', '.join(CHECKS)}")
    return CHECKS[name]()


def _in_notebook() -> bool:
    """Whether we run in a Jupyter kernel (which can render Markdown), not a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _show(message: str) -> None:
    """A notice the learner sees: rendered Markdown in a notebook, a log warning elsewhere."""
    if _in_notebook():
        from IPython.display import Markdown, display

        display(Markdown(message.replace("\n", "  \n")))
    else:
        log.warning("%s", message)


@dataclass(frozen=True)
class Requirement:
    """What `require()` found: true when every tool is present, else it names the missing ones
    (so `needs()` can say why a cell is skipped). `HAVE_A and HAVE_B` keeps the missing one."""

    missing: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return not self.missing

    def __repr__(self) -> str:
        return f"Requirement(missing={list(self.missing)})" if self.missing else "True"


def require(*names: str) -> Requirement:
    """True if every named capability is present; otherwise explain (or raise when strict)."""
    missing = [cap for cap in map(check, names) if not cap.available]
    if not missing:
        return Requirement()
    lines = [
        f"**Missing: {cap.name}** ({cap.detail}). Install it with:\n{cap.install_hint}"
        for cap in missing
    ]
    message = "\n".join(lines)
    if strict_mode():
        raise MissingCapability(f"{message}\n(OPSLAB_STRICT is set: missing tools are errors)")
    _show(f"{message}\nThe cells that need it will be skipped.")
    return Requirement(tuple(cap.name for cap in missing))


def needs(have: Requirement | bool, *, shows: str, why: str | None = None) -> bool:
    """Whether a cell can run; if not, one line says what it would have shown and why not.

    `have` is what `require()` returned (it names the missing tool) or any flag, with `why`
    saying what is missing, e.g. `needs(HADOLINT, shows=..., why="hadolint is not installed")`.
    """
    if not shows.strip():
        raise ValueError("needs() wants `shows`: what the skipped cell would have shown")
    if have:
        return True
    missing = getattr(have, "missing", ())
    reason = f"{' and '.join(missing)} is not installed" if missing else why or "it cannot run"
    _show(f"*Skipped: {reason}. This cell would show {shows.strip().rstrip('.')}.*")
    return False


def report() -> pd.DataFrame:
    """A table of every check, for the setup notebook."""
    import pandas as pd

    return pd.DataFrame([asdict(check(name)) for name in CHECKS]).set_index("name")
