"""Dockerfile parsing and the six rules of review question 1b."""

from __future__ import annotations

from typing import Any

import pytest

from opslab import grading


def test_parse_dockerfile_joins_continuations_and_names_stages() -> None:
    stages = grading.parse_dockerfile(
        "# comment\nFROM python:3.11 AS builder\nRUN a \\\n    && b\n"
        "FROM python:3.11-slim\nUSER 1000\n"
    )
    assert [(s.base, s.name) for s in stages] == [
        ("python:3.11", "builder"),
        ("python:3.11-slim", None),
    ]
    assert stages[0].all("RUN")[0].args == "a  && b"
    assert stages[1].all("USER")[0].args == "1000"


@pytest.mark.parametrize("rule", sorted(grading.RULES))
def test_check_dockerfile_model_answer_passes(master: dict[str, Any], rule: str) -> None:
    assert grading.check_dockerfile(master["dockerfile"], rule) is None


@pytest.mark.parametrize("rule", sorted(grading.RULES))
def test_check_dockerfile_given_file_fails(exercise: dict[str, Any], rule: str) -> None:
    failure = grading.check_dockerfile(exercise["dockerfile"], rule)
    assert isinstance(failure, grading.Failed)
    assert failure.message


def test_check_dockerfile_shell_form_explains_signals() -> None:
    text = "FROM a AS b\nFROM c\nCOPY --from=b /x /x\nCMD python app.py\n"
    assert "SIGTERM" in repr(grading.check_dockerfile(text, "exec-form"))


def test_check_dockerfile_final_stage_from_builder_fails() -> None:
    text = "FROM a AS builder\nFROM builder\nCOPY --from=builder /x /x\n"
    assert "inherits the build tools" in repr(grading.check_dockerfile(text, "no-build-tools"))


def test_check_dockerfile_source_before_install_fails() -> None:
    text = "FROM a AS b\nCOPY requirements.txt .\nCOPY app/ app/\nRUN pip install -r req.txt\n"
    assert "BEFORE" in repr(grading.check_dockerfile(text, "deps-first"))


def test_check_dockerfile_unanswered_says_so() -> None:
    assert "Not answered yet" in repr(grading.check_dockerfile(..., "stages"))
