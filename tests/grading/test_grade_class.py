"""Regenerating the exercises (in sync with the masters) and grading a folder of submissions."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from opslab import grade_class

pytestmark = pytest.mark.slow
SUBMISSIONS = Path(__file__).parent / "submissions"


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]


def _tests(zipped: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zipped) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.startswith("tests/")}


@pytest.mark.parametrize(
    "master", sorted(grade_class.SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name
)
def test_assign_exercises_in_sync_with_solutions(master: Path, tmp_path: Path) -> None:
    zipped = grade_class.assign(master, tmp_path / "exercises", tmp_path / "autograder")
    fresh = tmp_path / "exercises" / master.name
    committed = grade_class.EXERCISES / master.name
    assert _cells(fresh) == _cells(committed), "run `make exercises` and commit the result"
    fresh_meta = nbformat.read(fresh, as_version=4).metadata["otter"]
    assert fresh_meta == nbformat.read(committed, as_version=4).metadata["otter"]
    assert _tests(zipped) == _tests(grade_class.AUTOGRADER / zipped.name)


def test_grade_submissions_get_the_scores_they_deserve(tmp_path: Path) -> None:
    out = tmp_path / "grades.csv"
    assert grade_class.main(["grade", str(SUBMISSIONS), "--out", str(out)]) == 0
    scores = pd.read_csv(out, index_col="submission")
    assert scores.loc["complete", "percent"] == 100.0
    assert scores.loc["empty", "total"] == 0
    partly = scores.loc["partly_right"]
    assert (partly["q1a"], partly["q2a"], partly["q3a"]) == (2, 0, 2)
    assert partly["q1b"] == 2  # two stages and no build tools; root and shell form lose points
    assert partly["q2b"] == 2  # only the public checks: the hidden ones catch the hard-coding
    assert partly["q3b"] == 0
    assert (scores["seconds"] < 60).all()
    assert out.with_suffix(".png").stat().st_size > 0
