"""The review notebooks' answers as Python values: the master's solutions, the given prompts."""

from __future__ import annotations

import re
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SKIP = ("grader", "otter", "opslab.setup", "grading.check", "BEGIN TEST CONFIG", "attempt")


def answers(notebook: Path) -> dict[str, Any]:
    """Run the notebook's answer cells (not setup, checks or tests) into a fresh namespace."""
    module = types.ModuleType(f"review_answers_{notebook.parent.name}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    namespace = module.__dict__
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and not any(s in cell.source for s in SKIP):
            exec(compile(cell.source, str(notebook), "exec"), namespace)
    return namespace


@pytest.fixture(scope="session")
def master() -> dict[str, Any]:
    """The model answers from solutions/review.ipynb."""
    return answers(ROOT / "solutions" / "review.ipynb")


@pytest.fixture(scope="session")
def exercise() -> dict[str, Any]:
    """The untouched learner notebook's values: the given Dockerfile, server, loader stub."""
    return answers(ROOT / "exercises" / "review.ipynb")


def master_tests(notebook: str, question: str) -> list[tuple[dict[str, Any], str]]:
    """A question's test cells in a master: (their TEST CONFIG, the check expression)."""
    cells = nbformat.read(ROOT / "solutions" / notebook, as_version=4).cells
    tests, inside = [], False
    for cell in cells:
        if cell.cell_type == "raw" and cell.source.startswith("# BEGIN QUESTION"):
            inside = yaml.safe_load(cell.source.partition("\n")[2])["name"] == question
        elif inside and "# BEGIN TEST CONFIG" in cell.source:
            config, _, check = cell.source.partition("# END TEST CONFIG")
            config = config.partition("# BEGIN TEST CONFIG")[2].strip().rstrip('"').strip()
            tests.append((yaml.safe_load(config), check.strip()))
    return tests


def master_score(
    notebook: str, question: str, *, skip: str = "", **answer: Any
) -> tuple[float, float]:
    """(points earned, points possible) when the master's tests of `question` run on `answer`.

    Tests whose expression contains `skip` (when given) are left out of both numbers.
    """
    from opslab import grading
    from opslab.grading import (
        build_checks,
        deploy_checks,
        k8s_checks,
        lifecycle_checks,
        metrics_checks,
        nginx_checks,
        precedence_checks,
    )

    modules = (build_checks, deploy_checks, k8s_checks, lifecycle_checks, metrics_checks,
               nginx_checks)  # fmt: skip
    namespace = {m.__name__.rpartition(".")[2]: m for m in (*modules, precedence_checks)}
    namespace.update(grading=grading, **answer)
    earned = possible = 0.0
    for config, check in master_tests(notebook, question):
        if skip and skip in check:
            continue
        possible += config["points"]
        if eval(check, namespace) is None:  # the master's own check expressions
            earned += config["points"]
    return earned, possible


SOLUTION = re.compile(r"# BEGIN SOLUTION NO PROMPT\n(.*)# END SOLUTION", re.S)


def solved_notebook(stem: str, out: Path) -> Path:
    """The learner notebook with each answer cell replaced by the master's solution."""
    from opslab import grade_class

    master = nbformat.read(grade_class.SOLUTIONS / f"{stem}.ipynb", as_version=4)
    solutions = [m.group(1) for c in master.cells if (m := SOLUTION.search(c.source))]
    notebook = nbformat.read(grade_class.EXERCISES / f"{stem}.ipynb", as_version=4)
    cells = [c for c in notebook.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    assert len(cells) == len(solutions) > 0
    for cell, solution in zip(cells, solutions, strict=True):
        cell.source = solution.strip("\n")
    path = out / f"{stem}.ipynb"
    nbformat.write(notebook, path)
    return path


def grade_solved_and_untouched(
    stems: tuple[str, ...], out: Path
) -> dict[tuple[str, str], dict[str, object]]:
    """Each checkpoint graded twice by its autograder ("solved", "untouched"), two at a time."""
    from opslab import grade_class

    jobs = {}
    for stem in stems:
        jobs[stem, "solved"] = solved_notebook(stem, out)
        jobs[stem, "untouched"] = grade_class.EXERCISES / f"{stem}.ipynb"

    def grade(key: tuple[str, str]) -> dict[str, object]:
        return grade_class.grade_one(jobs[key], grade_class.AUTOGRADER / f"{key[0]}-autograder.zip")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(grade, jobs), strict=True))


def scores(row: dict[str, object]) -> tuple[float, float]:
    """(points earned, points possible) in one grades.csv row."""
    questions = [k for k in row if f"{k} max" in row]
    return sum(row[q] for q in questions), sum(row[f"{q} max"] for q in questions)  # type: ignore[misc]
