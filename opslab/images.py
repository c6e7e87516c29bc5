"""Container images for the notebooks: the base image, the build context, image builds.

Without a registry, the base image is made locally once with debootstrap and kept in the
engine's storage (the cache across runs); learners with Docker use a public Python image.
The build context stages the app with wheels built on the host (TLS to PyPI fails inside
containers here), cached by the hash of the pinned requirements.
"""

from __future__ import annotations

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
from docker.models.images import Image

from opslab import build, registry
from opslab.caps import find_binary
from opslab.procs import ProcessError

log = logging.getLogger(__name__)

BASE_TAG = "localhost/opslab-base:bookworm"
PUBLIC_BASE = "python:3.11-slim-bookworm"
DOCKERFILE = build.APP_DIR / "ops" / "Dockerfile"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "opslab"
WHEEL_CACHE = CACHE_DIR / "wheels"
# The debootstrapped root file system as a tar: a second engine imports it in seconds.
ROOTFS_CACHE = CACHE_DIR / "rootfs-bookworm.tar"


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


def _debootstrap_rootfs() -> Path:
    """Debian bookworm with Python 3.11, venv and CA certificates, as a tar (made once)."""
    if ROOTFS_CACHE.is_file():
        return ROOTFS_CACHE
    ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="opslab-rootfs-", dir=ROOTFS_CACHE.parent) as tmp:
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
        tar.replace(ROOTFS_CACHE)  # atomic: a half-written tar is never taken for the cache
    return ROOTFS_CACHE


def _debootstrap_image(client: docker.DockerClient, tag: str) -> Image:
    """The debootstrapped root file system imported as `tag`."""
    repo, _, version = tag.rpartition(":")
    client.api.import_image(src=str(_debootstrap_rootfs()), repository=repo, tag=version)
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
    if ROOTFS_CACHE.is_file() or (find_binary("debootstrap") and os.geteuid() == 0):
        _debootstrap_image(client, tag)
        return tag, time.perf_counter() - started
    client.images.pull(PUBLIC_BASE)  # a learner with Docker and a registry
    return PUBLIC_BASE, time.perf_counter() - started


# ----- build context ----------------------------------------------------------------------


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement line (`name==1.0; ...` -> `name`)."""
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip()


def pinned_dependencies() -> list[str]:
    """The app's dependencies pinned to the versions installed here (what the tests ran)."""
    names = [requirement_name(dep) for dep in build.app_dependencies()]
    return sorted(f"{name}=={importlib.metadata.version(name)}" for name in names)


def linux_arch() -> str:
    """The CPU architecture as Linux wheels name it (an arm64 Mac runs aarch64 containers)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def linux_wheels(
    pins: list[str], *, python_version: str = "3.11", arch: str | None = None, prefix: str = ""
) -> Path:
    """Linux wheels for `pins`, downloaded on the host and cached by their hash.

    `pip download --only-binary` with an explicit platform fetches wheels for the
    image's Linux, not the host's OS: the same cache works from macOS. Containers
    cannot reach PyPI over TLS here, so a build installs only these files.
    """
    arch = arch or linux_arch()
    digest = hashlib.sha256(json.dumps([pins, arch, python_version]).encode()).hexdigest()[:16]
    target = WHEEL_CACHE / f"{prefix}{digest}"
    if (target / "requirements.txt").is_file():
        return target
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=WHEEL_CACHE))
    platforms = [f"manylinux_2_{v}_{arch}" for v in (36, 34, 28, 17)] + [f"manylinux2014_{arch}"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--abi", "cp311",
           *[f"--platform={p}" for p in platforms], "--dest", str(tmp), *pins]  # fmt: skip
    log.info("downloading %d pinned packages as Linux wheels", len(pins))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProcessError(f"pip download failed:\n{done.stderr[-3000:]}")
    (tmp / "requirements.txt").write_text("\n".join(pins) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(tmp, target)
    return target


def dependency_wheels(arch: str | None = None) -> Path:
    """Linux wheels for the app's dependencies (Python 3.11)."""
    return linux_wheels(pinned_dependencies(), arch=arch)


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
