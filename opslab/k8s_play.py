"""The Deployment's pod run for real by `podman kube play`, and what podman made of it.

No Kubernetes runs here; podman 4.3 plays a Pod from YAML. The pod is the Deployment's own
template (not a copy kept by hand) with only what a laptop needs changed: the local image,
a loopback host port, unique names for the Secret and the emptyDir volumes (podman makes
each emptyDir a named volume called after it, machine-wide) and a Secret generated for the
run. `PlayedPod.facts()` records which parts of the spec podman honoured; `down()` times
`podman kube down`. Everything is removed on exit, also after a failure.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from opslab import k8s, pidfiles
from opslab.caps import find_binary
from opslab.procs import ProcessError, free_port

log = logging.getLogger(__name__)

SHUTDOWN_LINES = {
    "sigterm": "received SIGTERM",
    "uvicorn": "Shutting down",
    "pool_closed": "database connection pool closed",
    "finished": "Finished server process",
}


def podman(*args: str, timeout: float = 60, check: bool = True) -> str:
    """Run the podman CLI; its stdout (stderr in the error when it fails)."""
    binary = find_binary("podman") or "podman"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise ProcessError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def podman_version() -> tuple[int, int]:
    """podman's (major, minor): what it honours of a pod spec changed across versions."""
    raw = podman("version", "--format", "{{.Client.Version}}").strip()
    major, minor = raw.split("-")[0].split(".")[:2]
    return int(major), int(minor)


def pod_manifest(
    deployment: k8s.Manifest, *, name: str, image: str, host_port: int, secret: str
) -> k8s.Manifest:
    """A Pod from the Deployment's template, changed only where a laptop differs."""
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    for container in spec["containers"]:
        container.update(image=image, imagePullPolicy="Never")
        for port in container.get("ports", []):
            if port.get("name") == "http":
                port.update(hostPort=host_port, hostIP="127.0.0.1")
        for mount in container.get("volumeMounts", []):
            mount["name"] = f"{name}-{mount['name']}"
    for volume in spec.get("volumes", []):
        volume["name"] = f"{name}-{volume['name']}"
        if "secret" in volume:
            volume["secret"]["secretName"] = secret
    metadata = {"name": name, **{k: template["metadata"][k] for k in ("labels", "annotations")}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def secret_manifest(name: str, values: dict[str, str]) -> k8s.Manifest:
    """A Secret for this run only (generated values, never written into the repository)."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


@dataclass
class PlayedPod:
    """A pod started by `podman kube play`, reachable on a loopback port."""

    name: str
    port: int
    file: Path
    secret_value: str = field(repr=False)
    volumes: list[str]
    container: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> httpx.Response:
        """Poll /ready until 200: podman runs no readiness probe, so we are the probe."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (response := http.get("/ready")).status_code == 200:
                        return response
                if time.monotonic() > deadline:
                    raise ProcessError(f"{self.name}: no 200 from /ready\n{self.logs()}")
                time.sleep(0.2)

    def logs(self) -> str:
        return podman("logs", self.container, check=False) if self.container else ""

    def inspect(self) -> dict[str, Any]:
        """`podman inspect` of the app container: what the spec became."""
        return dict(json.loads(podman("inspect", self.container))[0])

    def exec(self, *cmd: str) -> tuple[int, str]:
        """Run a command in the app container: (exit code, output)."""
        binary = find_binary("podman") or "podman"
        done = subprocess.run([binary, "exec", self.container, *cmd], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        return done.returncode, (done.stdout + done.stderr).strip()

    def app_log(self) -> str:
        """The app's log, from a file of our own (`kube down` removes the container's)."""
        return self.log_path.read_text() if self.log_path.is_file() else ""

    def stop(self, grace: int) -> dict[str, Any]:
        """`podman pod stop --time grace`, timed: SIGTERM, then SIGKILL after `grace` s."""
        started = time.time()
        podman("pod", "stop", "--time", str(grace), self.name, timeout=grace + 60)
        seconds = time.time() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.container).strip()
        return {"seconds": seconds, "exit_code": int(code), **self._shutdown(started)}

    def down(self) -> dict[str, Any]:
        """`podman kube down`, timed (podman 4.3 stops with no grace at all: see README)."""
        started = time.time()
        podman("kube", "down", str(self.file), timeout=120)
        return {"seconds": time.time() - started, **self._shutdown(started)}

    def _shutdown(self, since: float) -> dict[str, Any]:
        text = self.app_log()
        return {
            "after": _line_times(text, since),
            "graceful": SHUTDOWN_LINES["pool_closed"] in text,
        }

    def cleanup(self) -> None:
        _remove(self.name, self.volumes)


def _remove(name: str, volumes: list[str]) -> None:
    """Remove whatever is left: pod, volumes (the Secret's one stays after down), secret."""
    podman("pod", "rm", "--force", "--time", "0", name, check=False)
    for volume in volumes:
        podman("volume", "rm", "--force", volume, check=False)
    podman("secret", "rm", volumes[-1], check=False)


def _line_times(text: str, since: float) -> dict[str, float]:
    """Seconds from `since` to the first log line holding each of SHUTDOWN_LINES."""
    times: dict[str, float] = {}
    for line in text.splitlines():
        stamp, _, rest = line.partition(" ")
        for key, needle in SHUTDOWN_LINES.items():
            if key not in times and needle in rest:
                with contextlib.suppress(ValueError):
                    times[key] = _parse_time(stamp) - since
    return times


STAMP = re.compile(r"^(\S+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _parse_time(stamp: str) -> float:
    """podman's RFC 3339 timestamp (nanoseconds, which datetime cannot read) as epoch."""
    found = STAMP.match(stamp)
    if not found:
        raise ValueError(stamp)
    head, frac, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}{zone}").timestamp()


def facts(pod: PlayedPod, deployment: k8s.Manifest) -> dict[str, object]:
    """What podman made of each part of the spec, observed in the running container."""
    info = pod.inspect()
    config, host = info["Config"], info["HostConfig"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    data_dir = k8s.container_settings(container).data_dir
    _, secret_file = pod.exec("cat", "/run/secrets/sample-app/csrf_secret")
    encoded = base64.b64encode(pod.secret_value.encode()).decode()
    ro_code, _ = pod.exec("touch", "/probe-root-write")
    data_code, _ = pod.exec("touch", f"{data_dir}/probe-write")
    return {
        "healthcheck": config.get("Healthcheck", {}).get("Test"),
        "user": config.get("User"),
        "uid": pod.exec("id", "-u")[1],
        "read_only_root": bool(host.get("ReadonlyRootfs")) and ro_code != 0,
        "data_dir_writable": data_code == 0,
        "stop_timeout": config.get("StopTimeout"),
        "grace_period": deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "memory_limit": host.get("Memory"),
        "memory_reservation": host.get("MemoryReservation"),
        "cpu_quota": (host.get("CpuQuota"), host.get("CpuPeriod")),
        "cpu_shares": host.get("CpuShares"),
        "cap_drop_all": pod.exec("grep", "CapEff", "/proc/1/status")[1].endswith("0" * 16),
        "no_new_privileges": "no-new-privileges" in (host.get("SecurityOpt") or []),
        "restart_policy": host.get("RestartPolicy", {}).get("Name"),
        "instance_id": pod.exec("printenv", "INSTANCE_ID")[1],
        "secret_file": "value" if secret_file == pod.secret_value else
                       "base64 of value" if secret_file == encoded else "other",
    }  # fmt: skip


POD_PREFIX = "opslab-k8s-"
ORPHAN = re.compile(rf"^{POD_PREFIX}(\d+)-(\d+)$")


def _owned_name() -> str:
    """The pod's name: this process's pid and start time, so a later run can tell it is gone."""
    return f"{POD_PREFIX}{os.getpid()}-{pidfiles.start_time(os.getpid())}"


def _volumes(name: str, deployment: k8s.Manifest) -> list[str]:
    """What podman makes for the pod `name`: a volume per emptyDir, then the Secret's."""
    spec = deployment["spec"]["template"]["spec"]
    empty = [f"{name}-{v['name']}" for v in spec.get("volumes", []) if "emptyDir" in v]
    return [*empty, f"{name}-secret"]


def remove_orphan_pods(deployment: k8s.Manifest | None = None) -> list[str]:
    """Remove played pods (and their volumes and secret) whose kernel died before cleanup."""
    deployment = deployment or k8s.find(k8s.load(), "Deployment")
    removed = []
    for name in podman("pod", "ls", "--format", "{{.Name}}", check=False).split():
        found = ORPHAN.match(name)
        if found and str(pidfiles.start_time(int(found[1]))) != found[2]:
            _remove(name, _volumes(name, deployment))
            removed.append(name)
    if removed:
        log.info("removed pods left by a kernel that died: %s", ", ".join(removed))
    return removed


@contextlib.contextmanager
def played(image: str, objects: list[k8s.Manifest] | None = None) -> Iterator[PlayedPod]:
    """Play the Deployment's pod with `image`; always removed afterwards."""
    deployment = k8s.find(objects or k8s.load(), "Deployment")
    remove_orphan_pods(deployment)
    name = _owned_name()
    secret_name = f"{name}-secret"
    value = secrets.token_urlsafe(48)
    pod = pod_manifest(deployment, name=name, image=image, host_port=free_port(),
                       secret=secret_name)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix=f"{pidfiles.WORKDIR_PREFIX}k8s-"))
    pidfiles.mark_owner(workdir)  # removed by reap_orphans() if this kernel dies
    file = workdir / "pod.yaml"
    file.write_text(yaml.safe_dump_all([secret_manifest(secret_name, {"csrf_secret": value}), pod]))
    file.chmod(0o600)
    volumes = _volumes(name, deployment)
    port = pod["spec"]["containers"][0]["ports"][0]["hostPort"]
    log_path = workdir / "app.log"
    played_pod = PlayedPod(name, port, file, value, volumes, f"{name}-app", log_path)
    try:
        podman("pod", "rm", "--force", name, check=False)  # a killed run's leftovers
        played_pod.cleanup()
        podman("kube", "play", "--log-opt", f"path={log_path}", str(file), timeout=120)
        yield played_pod
    finally:
        played_pod.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
