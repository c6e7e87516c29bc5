"""Review question 1b built and run for real, on podman and on Docker Engine, offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from opslab import containers, grading
from opslab.grading import dockerfile_build
from opslab.grading.dockerfile_build import build_and_run
from opslab.images import dependency_wheels
from tests.conftest import ENGINE_KINDS, require_engine

pytestmark = [pytest.mark.slow]
ENTRYPOINT = (
    'ENTRYPOINT ["/venv/bin/uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8080"]'
)


@pytest.fixture(scope="module", params=ENGINE_KINDS, autouse=True)
def engine_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of the module on each engine (OPSLAB_ENGINE); a dockerd started is stopped."""
    require_engine(request.param)  # strict (CI): a missing engine fails, never skips
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLAB_ENGINE", request.param)
        yield request.param
    found = containers._ENGINE
    if found is not None and found.kind == request.param and found.service is not None:
        found.service.stop()


@pytest.fixture(scope="module")
def model_run(engine_kind: str, master: dict[str, Any]) -> dockerfile_build.RunReport:
    """One build and run of the model answer, shared: later builds reuse its layers."""
    return build_and_run(master["dockerfile"])


def _variant(master: dict[str, Any], new: str) -> str:
    assert ENTRYPOINT in master["dockerfile"]
    return master["dockerfile"].replace(ENTRYPOINT, new)


@pytest.mark.timeout(600)
def test_build_and_run_model_answer_answers_and_stops_fast(
    model_run: dockerfile_build.RunReport,
) -> None:
    assert model_run.uid not in {0, None}
    assert model_run.pid1.endswith("uvicorn app.main:app --host 0.0.0.0 --port 8080")
    assert model_run.exit_code == 0
    assert model_run.stop_seconds < dockerfile_build.STOP_FAST
    assert model_run.healthcheck is not None
    assert model_run.healthcheck[0] == "/venv/bin/python"
    assert model_run.health_running == 0
    assert model_run.health_idle not in {0, None}  # no app in that container: the probe fails


@pytest.mark.timeout(300)
def test_check_dockerfile_runs_model_answer_passes_from_cache(
    model_run: dockerfile_build.RunReport, master: dict[str, Any]
) -> None:
    assert grading.check_dockerfile_runs(master["dockerfile"]) is None


@pytest.mark.timeout(300)
def test_check_dockerfile_runs_shell_form_is_killed_after_grace(
    model_run: dockerfile_build.RunReport, master: dict[str, Any]
) -> None:
    text = _variant(master, "CMD /venv/bin/uvicorn app.main:app --host 0.0.0.0 --port 8080")
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "did not end on SIGTERM" in failure.message
    assert "/bin/sh -c" in failure.message
    assert "exit code was 137" in failure.message
    assert "root" not in failure.message  # USER is still set: only the stop is wrong


@pytest.mark.timeout(300)
def test_check_dockerfile_runs_wrong_module_shows_the_log(
    model_run: dockerfile_build.RunReport, master: dict[str, Any]
) -> None:
    text = _variant(master, ENTRYPOINT.replace("app.main:app", "app.server:app"))
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "exited with code" in failure.message
    assert "app.server" in failure.message  # uvicorn's own error, from the container log


@pytest.mark.timeout(300)
def test_check_dockerfile_runs_failed_step_shows_step_and_log(
    model_run: dockerfile_build.RunReport, master: dict[str, Any]
) -> None:
    text = master["dockerfile"].replace("COPY app/ ./app/", "COPY src/ ./src/")
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "step `COPY src/ ./src/` failed" in failure.message


def test_check_dockerfile_runs_unsupported_base_says_what_works() -> None:
    text = "FROM node:20 AS builder\nRUN true\nFROM node:20-slim\nCOPY --from=builder /a /a\n"
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "`FROM node:20` cannot be built here" in failure.message
    assert "python:<tag>" in failure.message


def test_check_dockerfile_runs_single_stage_is_not_built(exercise: dict[str, Any]) -> None:
    failure = grading.check_dockerfile_runs(exercise["dockerfile"])
    assert isinstance(failure, grading.Failed)
    assert "single stage" in failure.message


def test_check_dockerfile_runs_unanswered() -> None:
    assert "Not answered yet" in repr(grading.check_dockerfile_runs(...))


def test_no_leftover_containers_or_images(
    model_run: dockerfile_build.RunReport, engine_kind: str
) -> None:
    cli = dockerfile_build.engine_cli()
    assert cli is not None
    assert cli.kind == engine_kind
    assert list(dockerfile_build._labelled(cli, "container")) == []
    assert list(dockerfile_build._labelled(cli, "image")) == []
    assert cli.image_exists(dockerfile_build.python_like_tag(dependency_wheels()))


def test_remove_orphans_removes_a_dead_graders_container(
    model_run: dockerfile_build.RunReport, engine_kind: str
) -> None:
    """A grading killed mid-run leaves its container: the next grading removes it."""
    cli = dockerfile_build.engine_cli()
    assert cli is not None
    tag = dockerfile_build.python_like_tag(dependency_wheels())
    name = f"opslab-q1b-orphan-{engine_kind}"
    labels = ["--label", f"{containers.OWNER_LABEL}=999999999:1",
              "--label", dockerfile_build.GRADING_LABEL]  # fmt: skip
    created = cli("create", "--name", name, *labels, tag, "true")
    assert created.returncode == 0, created.stderr
    assert name in dockerfile_build.remove_orphans(cli)
    assert cli("inspect", name).returncode != 0


HEALTHCHECK = re.compile(r"^HEALTHCHECK .*?\n(?=ENTRYPOINT)", re.S | re.M)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "healthcheck",
    ['HEALTHCHECK CMD ["true"]\n', "HEALTHCHECK CMD true\n",
     'HEALTHCHECK CMD ["/venv/bin/python", "-c", "print(1)"]\n'],
    ids=["exec-true", "shell-true", "python-print"],
)  # fmt: skip
def test_check_dockerfile_runs_healthcheck_that_probes_nothing_fails(
    model_run: dockerfile_build.RunReport, master: dict[str, Any], healthcheck: str
) -> None:
    text, replaced = HEALTHCHECK.subn(healthcheck, master["dockerfile"])
    assert replaced == 1
    assert grading.check_dockerfile(text, "healthcheck") is None  # the parse rule is fooled
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "where the app is not running" in failure.message
    assert "root" not in failure.message
    assert "SIGTERM" not in failure.message


@pytest.mark.timeout(300)
def test_check_dockerfile_runs_healthcheck_missing_program_fails(
    model_run: dockerfile_build.RunReport, master: dict[str, Any]
) -> None:
    text = HEALTHCHECK.sub(
        "HEALTHCHECK CMD curl -fsS http://127.0.0.1:8080/healthz\n", master["dockerfile"]
    )
    failure = grading.check_dockerfile_runs(text)
    assert isinstance(failure, grading.Failed)
    assert "failed (exit 127) while the app was answering" in failure.message
