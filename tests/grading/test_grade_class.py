"""Regenerating the exercises (in sync with the masters) and grading a folder of submissions."""

from __future__ import annotations

import shutil
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


def _ids(path: Path) -> list[str]:
    return [c.id for c in nbformat.read(path, as_version=4).cells]


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
    assert _ids(fresh) == _ids(committed), "cell ids must not churn: see stable_cell_ids"
    fresh_meta = nbformat.read(fresh, as_version=4).metadata["otter"]
    assert fresh_meta == nbformat.read(committed, as_version=4).metadata["otter"]
    assert _tests(zipped) == _tests(grade_class.AUTOGRADER / zipped.name)


@pytest.mark.timeout(600)  # q1b builds two Dockerfiles: apt and pip when the cache is cold
def test_grade_submissions_get_the_scores_they_deserve(tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    for notebook in SUBMISSIONS.glob("*.ipynb"):  # each twice: graded side by side, same score
        shutil.copy(notebook, folder / notebook.name)
        shutil.copy(notebook, folder / f"{notebook.stem}-again.ipynb")
    out = tmp_path / "grades.csv"
    assert grade_class.main(["grade", str(folder), "--out", str(out)]) == 0
    scores = pd.read_csv(out, index_col="submission")
    questions = ["q1a", "q1b", "q2a", "q2b", "q3a", "q3b"]
    for name in ("complete", "empty", "partly_right"):
        again = scores.loc[f"{name}-again", questions]
        assert (scores.loc[name, questions] == again).all(), (name, again.to_dict())
    assert (tmp_path / "grades-feedback" / "complete.txt").read_text().startswith("complete: ")
    assert scores.loc["complete", "percent"] == 100.0
    assert scores.loc["empty", "total"] == 0
    partly = scores.loc["partly_right"]
    assert (partly["q1a"], partly["q2a"], partly["q3a"]) == (2, 0, 2)
    # two stages, no build tools, a slim final base with its --prefix install from the builder;
    # root and shell form lose points, and so does its build-and-run and health check
    assert partly["q1b"] == 4
    # ... also when built and run: its shell-form CMD is SIGKILLed after the 10 s grace period
    assert partly["q2b"] == 2  # only the public checks: the hidden ones catch the hard-coding
    assert partly["q3b"] == 0
    assert (scores["seconds"] < 120).all()  # a q1b build, run and stop included
    assert out.with_suffix(".png").stat().st_size > 0


def test_stable_cell_ids_same_cells_same_ids(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("x = 1")]  # fmt: skip
    ids = []
    for attempt in range(2):
        for index, cell in enumerate(nb.cells):
            cell.id = f"random{attempt}{index}"
        nbformat.write(nb, tmp_path / "in.ipynb")
        out = grade_class.stable_cell_ids(tmp_path / "in.ipynb", tmp_path / f"out{attempt}.ipynb")
        ids.append(_ids(out))
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3  # a repeated cell still gets an id of its own


def test_reproducible_zip_same_bytes_whatever_the_order_and_time(tmp_path: Path) -> None:
    made = []
    for attempt, (names, when) in enumerate(
        [(["b.py", "a.py"], (2020, 1, 2, 3, 4, 6)), (["a.py", "b.py"], (2026, 5, 6, 7, 8, 10))]
    ):
        raw = tmp_path / f"raw{attempt}.zip"
        with zipfile.ZipFile(raw, "w") as archive:
            for name in names:
                archive.writestr(zipfile.ZipInfo(name, date_time=when), f"content of {name}")
        made.append(grade_class.reproducible_zip(raw, tmp_path / f"fixed{attempt}.zip"))
    assert made[0].read_bytes() == made[1].read_bytes()
    assert zipfile.ZipFile(made[0]).namelist() == ["a.py", "b.py"]
