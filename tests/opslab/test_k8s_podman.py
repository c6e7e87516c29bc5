"""The Deployment's pod under `podman kube play`: the real image answers, stops gracefully,
and what podman 4.3 honours of the spec is recorded (sample_app/ops/k8s/README.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from opslab import containers, k8s, k8s_play

# Only podman plays Kubernetes YAML: the shared `engine` fixture, on podman alone.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.alone,  # podman's image store and a timed stop
    pytest.mark.timeout(600),
    pytest.mark.parametrize("engine", ["podman"], indirect=True),
]
BUILD_ARGS = {"VERSION": "8.0.0-k8s", "COMMIT": "k8s0c0de", "BUILD_TIME": "2025-01-01T00:00:00Z"}
TAG = "localhost/sample-app:k8s-test"


@pytest.fixture(scope="module")
def image(engine: containers.Engine) -> str:
    """Section 02's image, built by the same machinery as the notebook's."""
    base, _ = containers.ensure_base_image(engine.client)
    ctx = containers.build_context(
        version=BUILD_ARGS["VERSION"], commit=BUILD_ARGS["COMMIT"],
        build_time=BUILD_ARGS["BUILD_TIME"],
    )  # fmt: skip
    containers.build_image(
        engine.client, ctx, tag=TAG, buildargs={"BASE_IMAGE": base, **BUILD_ARGS}
    )
    return TAG


@pytest.fixture
def pod(image: str) -> Iterator[k8s_play.PlayedPod]:
    with k8s_play.played(image) as played:
        played.wait_ready()
        yield played


def test_played_pod_serves_the_app_on_loopback(pod: k8s_play.PlayedPod) -> None:
    with httpx.Client(base_url=pod.url, timeout=5.0, trust_env=False) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"status": "ready"}
        assert http.get("/version").json()["version"] == BUILD_ARGS["VERSION"]
        created = http.post("/api/todos", json={"title": "from a pod"})
        assert created.status_code == 201  # the emptyDir at DATA_DIR is writable
        assert http.get("/", headers={"accept": "text/html"}).headers["x-instance"] == pod.name


def test_played_pod_keeps_the_security_context_and_limits(pod: k8s_play.PlayedPod) -> None:
    facts = k8s_play.facts(pod, k8s.find(k8s.load(), "Deployment"))
    assert facts["uid"] == "10001"
    assert facts["read_only_root"] is True
    assert facts["data_dir_writable"] is True
    assert facts["cap_drop_all"] is True
    assert facts["no_new_privileges"] is True
    assert facts["memory_limit"] == 256 * 1024 * 1024
    assert facts["instance_id"] == pod.name  # the downward API (fieldRef)
    if k8s_play.podman_version() < (4, 7):  # see README: what 4.3 ignores or maps
        assert facts["stop_timeout"] == 10  # terminationGracePeriodSeconds ignored
        assert facts["secret_file"] == "base64 of value"  # not decoded: a podman bug


def test_pod_stop_within_the_grace_period_is_graceful(pod: k8s_play.PlayedPod) -> None:
    container = k8s.app_container(k8s.load())
    settings = k8s.container_settings(container)
    grace = k8s.grace_period(settings, k8s.prestop_seconds(container))
    stopped = pod.stop(grace)
    assert stopped["exit_code"] == 0
    assert stopped["graceful"], pod.app_log()
    after = stopped["after"]
    # Times count from the stop request, before SIGTERM: uvicorn's shutdown cannot start
    # sooner than the drain after it, whatever the delivery and logging delays.
    assert after["sigterm"] < after["uvicorn"]
    assert after["uvicorn"] >= settings.drain_seconds
    assert stopped["seconds"] < grace
    # podman runs no preStop hook: SIGTERM arrives at once, not preStop seconds later.
    assert after["sigterm"] < k8s.prestop_seconds(container)


def test_kube_down_stops_the_pod(pod: k8s_play.PlayedPod) -> None:
    down = pod.down()
    assert k8s_play.podman("pod", "ls", "--quiet", "--filter", f"name=^{pod.name}$") == ""
    if k8s_play.podman_version() < (5, 1):
        # podman < 5.1 stops with no grace at all (PodStopOptions{} means a 0 s timeout):
        # SIGKILL right behind SIGTERM, no drain, the database pool never closed.
        assert not down["graceful"]
        assert "sigterm" not in down["after"]  # not even the drain began
    else:
        assert down["graceful"]


def test_a_pod_left_by_a_killed_kernel_is_removed_by_the_next_run(image: str) -> None:
    """A kernel killed inside `played()` never runs its cleanup: the next run removes all."""
    script = (
        "import os, signal\n"
        "from opslab import k8s_play\n"
        f"with k8s_play.played({image!r}) as pod:\n"
        "    print(pod.name, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    name = done.stdout.strip()
    assert k8s_play.podman("pod", "ls", "--quiet", "--filter", f"name=^{name}$")  # left behind
    assert name in k8s_play.remove_orphan_pods()
    assert k8s_play.podman("pod", "ls", "--quiet", "--filter", f"name=^{name}$") == ""
    volumes = k8s_play.podman("volume", "ls", "--format", "{{.Name}}").split()
    assert not [v for v in volumes if v.startswith(name)]
    assert name not in k8s_play.podman("secret", "ls", "--format", "{{.Name}}")


def test_a_live_kernels_pod_is_never_taken_for_an_orphan(pod: k8s_play.PlayedPod) -> None:
    assert pod.name not in k8s_play.remove_orphan_pods()
    assert pod.wait_ready(timeout=5).status_code == 200
