"""The learner's `grader.check`: the first line is the verdict, and a format check never passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opslab import grade_class
from opslab.grading import notebook


@pytest.fixture
def grader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> notebook.Notebook:
    shutil.copy(grade_class.EXERCISES / "review.ipynb", tmp_path)
    monkeypatch.chdir(tmp_path)
    return notebook.Notebook("review.ipynb")


def _verdict(grader: notebook.Notebook, question: str, **answers: object) -> list[str]:
    from opslab import grading

    return repr(grader.check(question, {"grading": grading, **answers})).splitlines()


def test_format_only_check_says_not_scored_yet(grader: notebook.Notebook) -> None:
    lines = _verdict(grader, "q1a", q1a={"A", "B"})  # well formed and wrong
    assert lines[0] == "q1a: answer well-formed; not scored until your notebook is graded"
    assert not any("passed" in line.lower() for line in lines)


def test_failure_is_one_line_with_the_checks_message(grader: notebook.Notebook) -> None:
    lines = _verdict(grader, "q1a", q1a="AB")
    assert lines == ["q1a: ✗ Give a set of letters such as {'A', 'C'}, not str 'AB'."]
    lines = _verdict(grader, "q1a", q1a=...)
    assert lines[0].startswith("q1a: ✗ Not answered yet")


def test_real_pass_says_so_and_what_stays_hidden(grader: notebook.Notebook) -> None:
    dockerfile = "FROM python:3.11-slim AS b\nFROM python:3.11-slim\nCOPY --from=b /venv /venv\n"
    lines = _verdict(grader, "q1b", dockerfile=dockerfile)
    assert lines[0] == "q1b: ✓ the public check passed (1 point)"
    assert "hidden" in lines[1]


def test_exercises_create_the_honest_grader_below_their_title() -> None:
    import nbformat

    for path in sorted(grade_class.EXERCISES.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].cell_type == "markdown"
        assert "from opslab.grading.notebook import Notebook" in cells[1].source, path.name
        assert "remove-cell" in cells[1].metadata["tags"]
