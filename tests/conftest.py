"""Shared fixtures: development settings on a temporary data dir, a test client, and the
container engines (each container test runs on podman and on Docker Engine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sample_app.config import Settings
from sample_app.main import create_app

# Tests that run with nothing beside them (`make test-app` runs the rest two at a time, then
# these, one by one): each times something (a duration, a rate, a drain, a race with a real
# server, load), or uses what is shared by the whole machine (the one private dockerd, podman's
# image store, the grading sandbox's uid range, every /tmp/opslab-* folder). A node id that
# starts with an entry is marked `alone`.
ALONE = {
    # grading: drains, grace periods, rate limits and cell time limits, in real servers
    "tests/grading/test_shutdown.py": "SIGTERM racing slow requests",
    "tests/grading/test_checkpoints_04_07.py": "drain and readiness timings (checkpoint 06)",
    "tests/grading/test_checkpoints_01_03.py::test_checkpoint_solution": "sandboxed, timed",
    "tests/grading/test_checkpoint_08.py::test_checkpoint_08_graded": "sandboxed, timed",
    "tests/grading/test_checkpoints_01_03.py::test_check_rate_limited": "nginx rate, wall clock",
    "tests/grading/test_common.py::test_time_limit": "a time limit's precision",
    "tests/grading/test_grade_class.py::test_grade_submissions": "q1b builds, timed stops",
    "tests/grading/test_dockerfile_build.py": "engine-wide q1b images, timed stops",
    "tests/grading/test_attacks.py": "5 s cell limits; bombs load the machine; sandbox uid scan",
    # toolkit
    "tests/opslab/test_load.py": "request rates and durations",
    "tests/opslab/test_timeline.py": "requests in flight at a signal",
    "tests/opslab/test_experiments.py": "exit times, rate limits, scrape rates",
    "tests/opslab/test_panel.py::test_a_click_run_moves_the_bar": "progress against the clock",
    "tests/opslab/variants/test_shutdown_variants.py": "exit times",
    "tests/opslab/test_bench.py::test_bench_tiny_load": "wrk load",
    "tests/opslab/test_k8s_podman.py": "podman's image store and volumes; a timed stop",
    "tests/opslab/test_proxy.py::test_proxy_rate_limits": "nginx rate limits",
    "tests/opslab/test_proxy.py::test_proxy_limits_writes": "nginx rate limits",
    "tests/opslab/test_proxy.py::test_proxy_streams_sse": "first event's latency",
    "tests/opslab/test_procs.py": "SIGKILL escalation times; free ports",
    "tests/opslab/test_containers.py": "the private dockerd; podman's image store",
    "tests/opslab/test_dockerd.py": "the private dockerd, docker0 and the NAT table",
    "tests/opslab/test_leaks.py::test_scan_image": "podman's image store",
    "tests/opslab/test_prometheus.py": "every scrape must land",
    "tests/opslab/test_pidfiles.py": "reaping scans every /tmp/opslab-* folder",
    "tests/opslab/test_setup.py": "setup() reaps orphans machine-wide",
    "tests/opslab/test_kind_mode.py": "a whole section's run, and its reaping",
    # the app
    "tests/sample_app/test_process.py": "drains and in-flight requests at signals",
    "tests/sample_app/test_deadline.py": "a 0.5 s response deadline",
    "tests/sample_app/test_chat_abuse.py": "token buckets refilling in real time",
    "tests/sample_app/test_lifecycle.py": "a force quit's latency",
    "tests/sample_app/test_pool_starvation.py": "128 concurrent clients",
    "tests/sample_app/test_dockerfile.py": "the private dockerd; podman's image store",
    "tests/sample_app/deploy/test_zero_downtime.py": "switches under wrk load",
    "tests/sample_app/deploy/test_deploy_panel.py": "no failure under live traffic",
    "tests/sample_app/deploy/test_deploy_abuse.py::test_two_deploys_at_once": "a race",
    # the browser: JupyterLab runs sections 06 and 07, which time their servers
    "tests/book/test_jupyterlab.py": "runs timing sections in JupyterLab",
    "tests/book/test_hub.py": "a hub of three learners takes both cores; creates Unix users",
    "tests/book/test_hub_image.py": "builds the single-user image in the engine's shared store",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of ALONE (see `make test-app`)."""
    for item in items:
        if any(item.nodeid.startswith(prefix) for prefix in ALONE):
            item.add_marker(pytest.mark.alone)


# The client address the app sees: /metrics answers only allowed networks.
LOOPBACK_CLIENT = ("127.0.0.1", 50000)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development settings with the database in a fresh temporary directory."""
    return Settings(_env_file=None, app_env="development", data_dir=tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client on loopback for an app whose lifespan (startup/shutdown) runs around the test."""
    with TestClient(create_app(settings), client=LOOPBACK_CLIENT) as test_client:
        yield test_client


ENGINE_KINDS = ("podman", "docker")
ENGINE_CAPABILITY = {"podman": "podman", "docker": "docker-engine"}


def require_engine(kind: str) -> None:
    """Skip when `kind` is missing or OPSLAB_ENGINE names the other; fail if strict and missing."""
    from opslab.caps import check, strict_mode

    wanted = os.environ.get("OPSLAB_ENGINE", "").strip().lower()
    if wanted and wanted != kind:
        pytest.skip(f"OPSLAB_ENGINE={wanted}")
    capability = check(ENGINE_CAPABILITY[kind])
    if capability.available:
        return
    if strict_mode():
        pytest.fail(f"{kind} is missing and OPSLAB_STRICT is set:\n{capability.install_hint}")
    pytest.skip(f"{kind}: {capability.detail}")


@pytest.fixture(scope="module", params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's tests on each engine in turn; a service started here is stopped after."""
    from opslab import containers

    require_engine(request.param)
    found = containers.engine(request.param)
    yield found
    if found.service is not None:
        found.service.stop()
