"""One submission from the instructor's side: read it as data, grade it in a judge, score it.

The notebook is only parsed (JSON): its code cells are sent to the judge, which runs them in
the sandbox. The tests and every question's points come from the instructor's autograder zip
(parsed with `ast.literal_eval`, never executed), so no submission can change a maximum.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opslab.grading import keys
from opslab.sandbox import confine

MAX_NOTEBOOK = 16 << 20
MAX_RESULT = 32 << 20
SUBMISSION_SECONDS = 600.0
OTTER_SCAFFOLD = re.compile(
    r"^\s*(#[^\n]*\n\s*)*((import otter|from opslab\.grading\.notebook import Notebook)\s*\n"
    r"\s*grader\s*=\s*(otter\.)?Notebook\([^)]*\)\s*"
    r"|(grader\.(check|check_all|export)\([^()]*\)\s*)+)$"
)
ROOT = Path(__file__).resolve().parents[2]


class GradingUnavailable(RuntimeError):  # noqa: N818 - reads as what happened
    """This machine cannot sandbox learner code; nothing was run."""


@dataclass(frozen=True)
class Question:
    name: str
    cases: list[dict[str, Any]]

    @property
    def points(self) -> float:
        return float(sum(case["points"] or 0 for case in self.cases))


@dataclass
class Graded:
    """What the judge found: points per question, and what happened to the cells."""

    submission: str
    scores: dict[str, float] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def questions(autograder_zip: Path) -> list[Question]:
    """The assignment's tests, read as literals from the zip (the instructor's copy)."""
    found = []
    with zipfile.ZipFile(autograder_zip) as archive:
        for name in sorted(archive.namelist()):
            if not re.fullmatch(r"tests/[\w-]+\.py", name):
                continue
            tree = ast.parse(archive.read(name).decode())
            for node in tree.body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "test":
                    test = ast.literal_eval(node.value)
                    cases = [case for suite in test["suites"] for case in suite["cases"]]
                    found.append(Question(test["name"], cases))
    return found


def code_cells(notebook: Path) -> list[str]:
    """The notebook's code cells, as text, without otter's scaffolding (its init and checks)."""
    if notebook.stat().st_size > MAX_NOTEBOOK:
        raise ValueError(f"the notebook is larger than {MAX_NOTEBOOK >> 20} MiB")
    data = json.loads(notebook.read_text(encoding="utf-8"))
    cells = []
    for cell in data.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if not OTTER_SCAFFOLD.match(source):
            cells.append(source)
    return cells


def hidden_paths(*extra: Path) -> list[str]:
    """What the sandbox must not see: answers, hidden tests, history, builds, submissions."""
    paths = [ROOT / name for name in ("solutions", "tests", ".git", "_build")]
    paths.append(Path(keys.__file__).parent)  # the judge imported them before hiding
    keep = confine.python_paths()
    for path in extra:
        path = path.resolve()
        if not any(p.is_relative_to(path) for p in keep):
            paths.append(path)
    return [str(p) for p in paths]


def grade_notebook(notebook: Path, tests: list[Question], hidden: list[str]) -> Graded:
    """Grade one notebook in a judge of its own; the whole run is bounded in time."""
    reason = confine.unavailable()
    if reason:
        raise GradingUnavailable(reason)
    graded, started = Graded(notebook.stem), time.monotonic()
    try:
        cells = code_cells(notebook)
    except (OSError, ValueError) as exc:
        graded.error = f"not a readable notebook: {exc}"
        return graded
    tests_data = [{"name": q.name, "cases": q.cases} for q in tests]
    with confine.uid_slot() as uid:
        job = {"cells": cells, "tests": tests_data, "uid": uid, "hidden": hidden}
        result = _judge(job, graded)
    graded.seconds = round(time.monotonic() - started, 1)
    if result is not None:
        _score(graded, result, tests)
    return graded


def _judge(job: dict[str, Any], graded: Graded) -> dict[str, Any] | None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opslab.sandbox.judge"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        out, err = proc.communicate(json.dumps(job).encode(), timeout=SUBMISSION_SECONDS)
    except subprocess.TimeoutExpired:
        confine.killpg(proc.pid)
        proc.communicate()
        graded.error = f"grading took longer than {SUBMISSION_SECONDS:g} s and was stopped"
        return None
    finally:
        confine.killpg(proc.pid)
    if proc.returncode != 0 or len(out) > MAX_RESULT:
        graded.error = "the judge failed: " + err.decode(errors="replace")[-1500:]
        return None
    return json.loads(out.decode().strip().splitlines()[-1])


def _score(graded: Graded, result: dict[str, Any], tests: list[Question]) -> None:
    """Points per question from the judge's case verdicts; notes for cells that misbehaved."""
    graded.scores = {q.name: 0.0 for q in tests}
    for case in result["cases"]:
        verdict = "passed" if case["passed"] else f"failed: {case['message']}"
        where = "hidden" if case["hidden"] else "public"
        graded.feedback.append(f"{case['question']} ({where}, {case['points']:g} pt) {verdict}")
        if case["passed"]:
            graded.scores[case["question"]] += case["points"]
    for cell in result["cells"]:
        if cell["status"] == "stopped":
            graded.notes.append(cell["message"])
    if result["output_bytes"] > 1 << 20:
        graded.notes.append(f"printed {result['output_bytes'] >> 20} MiB (kept the last 16 KiB)")
    if result["restarts"]:
        graded.notes.append(f"kernel restarted {result['restarts']} time(s)")
