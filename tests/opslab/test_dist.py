"""The learner distribution holds no solution and no hidden test (what launch links clone)."""

from __future__ import annotations

import ast
import re
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest

from opslab import dist, grade_class

SOLUTION_BLOCK = re.compile(r"# BEGIN SOLUTION NO PROMPT\n(.*?)# END SOLUTION", re.S)
PROMPT_BLOCK = re.compile(r"# BEGIN PROMPT\n(.*?)# END PROMPT", re.S)


def _hidden_cases() -> list[str]:
    """The code of every hidden test case, from the instructor's autograder zips."""
    found = []
    for zipped in sorted(grade_class.AUTOGRADER.glob("*.zip")):
        with zipfile.ZipFile(zipped) as archive:
            for name in archive.namelist():
                if name.startswith("tests/") and name.endswith(".py"):
                    tree = ast.parse(archive.read(name).decode())
                    test = ast.literal_eval(tree.body[-1].value)  # type: ignore[attr-defined]
                    cases = [c for s in test["suites"] for c in s["cases"] if c["hidden"]]
                    found += [c["code"].removeprefix(">>> ").strip() for c in cases]
    return found


def _solution_lines() -> set[str]:
    """Distinctive lines of the masters' answers: long, and not also in the given prompt."""
    lines, given = set(), set()
    for master in sorted(grade_class.SOLUTIONS.glob("*.ipynb")):
        for cell in nbformat.read(master, as_version=4).cells:
            blocks = SOLUTION_BLOCK.findall(cell.source)
            blocks += [line for line in cell.source.splitlines() if line.endswith("# SOLUTION")]
            for block in blocks:
                lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) >= 40}
            for block in PROMPT_BLOCK.findall(cell.source):
                given |= {ln.strip() for ln in block.splitlines()}
    return lines - given


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dist.build(tmp_path_factory.mktemp("dist") / "learner")


def _texts(root: Path) -> dict[str, str]:
    files = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts]
    return {str(p.relative_to(root)): p.read_text(errors="replace") for p in files}


def test_learner_distribution_has_no_solutions_or_tests(built: Path) -> None:
    names = set(_texts(built))
    assert not [n for n in names if n.startswith(("solutions/", "tests/", ".ci/"))]
    assert not [n for n in names if n.startswith("opslab/grading/keys/")]
    assert {"Makefile", "notebooks/00-setup.ipynb", "exercises/review.ipynb"} <= names
    assert any(n.startswith("sample_app/") for n in names)
    assert any(n.startswith("opslab/") for n in names)


def test_learner_distribution_has_no_hidden_test_or_answer_text(built: Path) -> None:
    texts = _texts(built)
    hidden, answers = _hidden_cases(), _solution_lines()
    assert len(hidden) > 20
    assert answers
    leaks = [(name, case) for name, text in texts.items() for case in hidden if case in text]
    assert leaks == []
    # sample_app/ is the course's subject: checkpoint 01 asks for what section 01 shows of it.
    course = {n: t for n, t in texts.items() if not n.startswith("sample_app/")}
    leaks = [(name, line) for name, text in course.items() for line in answers if line in text]
    assert leaks == []
    assert not [n for n, t in texts.items() if "# BEGIN SOLUTION" in t or "BEGIN TESTS" in t]


def test_learner_distribution_is_a_git_repository_and_a_tarball(built: Path) -> None:
    assert (built / ".git").is_dir()
    with tarfile.open(built.with_name("learner.tar.gz")) as tar:
        names = tar.getnames()
    assert "opslab-course/notebooks/00-setup.ipynb" in names
    assert not [n for n in names if "/solutions/" in n]
