"""Instructor side of the review questions: regenerate the exercises, grade a class.

`python -m opslab.grade_class exercises` runs `otter assign` on each master notebook in
`solutions/` and writes the learner notebooks to `exercises/` and the autograder zips to
`solutions/autograder/`. `python -m opslab.grade_class grade DIR` grades every notebook in
DIR in a sandbox (`opslab.sandbox`: the learner's code runs confined, a trusted judge decides
the score) into a CSV of per-question scores, a feedback file per submission, a summary table
and a bar plot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pandas as pd

from opslab.sandbox import submission
from opslab.sandbox.submission import Graded

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
AUTOGRADER = SOLUTIONS / "autograder"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def otter_bin() -> str:
    """The otter command next to this interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).with_name("otter")
    return str(here) if here.exists() else "otter"


def assign(master: Path, exercises: Path = EXERCISES, autograder: Path = AUTOGRADER) -> Path:
    """Run `otter assign` on one master; copy the learner notebook and the autograder zip."""
    with tempfile.TemporaryDirectory(prefix="opslab-assign-") as tmp:
        out = Path(tmp, "dist")
        subprocess.run(
            [otter_bin(), "assign", str(master), str(out)],
            check=True,
            capture_output=True,
            cwd=master.parent,
            timeout=300,
        )
        exercises.mkdir(parents=True, exist_ok=True)
        autograder.mkdir(parents=True, exist_ok=True)
        for notebook in (out / "student").glob("*.ipynb"):
            stable_cell_ids(notebook, exercises / notebook.name)
        (zipped,) = (out / "autograder").glob("*.zip")
        target = autograder / f"{master.stem}-autograder.zip"
        reproducible_zip(zipped, target)
    return target


OTTER_INIT = re.compile(r"import otter\s*\ngrader = otter\.Notebook\(")
HONEST_INIT = "from opslab.grading.notebook import Notebook\ngrader = Notebook("


def honest_grader(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """otter's setup cell, made to create the course's `grader` (one-line honest verdicts)
    and moved below the title; the book leaves it out of the page."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and OTTER_INIT.search(cell.source):
            cell.source = OTTER_INIT.sub(lambda _: HONEST_INIT, cell.source)
            cell.metadata.setdefault("tags", [])
            if "remove-cell" not in cell.metadata["tags"]:
                cell.metadata["tags"].append("remove-cell")
            title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), None)
            if title is not None and title > index:
                nb.cells.insert(title, nb.cells.pop(index))
            break
    return nb


def stable_cell_ids(notebook: Path, target: Path) -> Path:
    """Copy a notebook, replacing otter's random cell ids by ids derived from the cells.

    An id is a hash of the notebook's name, the cell's type and source (and which repeat of
    that source it is): regenerating gives the same ids, and an edit changes only its cell.
    """
    nb = honest_grader(nbformat.read(notebook, as_version=4))
    seen: dict[tuple[str, str], int] = {}
    for cell in nb.cells:
        key = (cell.cell_type, cell.source)
        seen[key] = seen.get(key, 0) + 1
        text = json.dumps([notebook.name, *key, seen[key]])
        cell.id = hashlib.sha256(text.encode()).hexdigest()[:8]
    nbformat.write(nb, target)
    return target


def reproducible_zip(source: Path, target: Path) -> Path:
    """Rewrite a zip with sorted entries and fixed timestamps: same content, same bytes."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in sorted(original.infolist(), key=lambda i: i.filename):
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            fixed.external_attr, fixed.compress_type = info.external_attr, info.compress_type
            fixed.create_system = info.create_system
            copy.writestr(fixed, original.read(info))
    return target


def grade_one(
    notebook: Path, autograder_zip: Path, hidden: list[str] | None = None
) -> dict[str, object]:
    """One submission's row: each question's score and maximum (from the assignment), time."""
    tests = submission.questions(autograder_zip)
    graded = _graded(notebook, tests, hidden or submission.hidden_paths(notebook.parent))
    row: dict[str, object] = {"submission": graded.submission}
    for question in tests:
        row[question.name] = graded.scores.get(question.name, 0.0)
        row[f"{question.name} max"] = question.points
    row["seconds"] = graded.seconds
    if graded.notes:
        row["notes"] = "; ".join(graded.notes)
    if graded.error:
        row["error"] = graded.error
    return row


def _graded(notebook: Path, tests: list[submission.Question], hidden: list[str]) -> Graded:
    """One submission, graded in a sandbox by a judge of its own (see `opslab.sandbox`)."""
    graded = submission.grade_notebook(notebook, tests, hidden)
    if graded.error:
        log.warning("could not grade %s: %s", notebook.name, graded.error)
    return graded


def grade(
    submissions: Path, autograder_zip: Path, workers: int = 2, feedback: Path | None = None
) -> pd.DataFrame:
    """Every *.ipynb in `submissions`: one row each, question scores, total and percentage.

    Each question's maximum comes from the assignment (the autograder zip), never from the
    submissions; `feedback` (a folder) receives one text file per submission.
    """
    tests = submission.questions(autograder_zip)
    maxima = {q.name: q.points for q in tests}
    hidden = submission.hidden_paths(submissions, *([feedback] if feedback else []))
    notebooks = sorted(submissions.glob("*.ipynb"))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda nb: _graded(nb, tests, hidden), notebooks))
    rows = [{"submission": g.submission, **g.scores} for g in results]
    scores = pd.DataFrame(rows, columns=["submission", *maxima]).set_index("submission")
    scores = scores.fillna(0.0)
    scores["total"] = scores.sum(axis=1)
    scores["percent"] = (100 * scores["total"] / sum(maxima.values())).round(1)
    scores["seconds"] = [g.seconds for g in results]
    scores["notes"] = ["; ".join(g.notes) for g in results]
    scores["error"] = [g.error for g in results]
    scores.attrs["max"] = maxima
    if feedback is not None:
        write_feedback(feedback, results, maxima)
    return scores


def write_feedback(folder: Path, results: list[Graded], maxima: dict[str, float]) -> None:
    """One text file per submission: the score of each question, each check's verdict, notes."""
    folder.mkdir(parents=True, exist_ok=True)
    for graded in results:
        total = sum(graded.scores.values())
        lines = [f"{graded.submission}: {total:g} / {sum(maxima.values()):g} points", ""]
        lines += [f"{q}: {graded.scores.get(q, 0):g} / {m:g}" for q, m in maxima.items()]
        lines += ["", *graded.feedback, "", *graded.notes]
        if graded.error:
            lines.append(f"not graded: {graded.error}")
        (folder / f"{graded.submission}.txt").write_text("\n".join(lines).rstrip() + "\n")


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per question: points available, mean score, and how many submissions got full marks."""
    maxima = pd.Series(scores.attrs["max"])
    questions = list(maxima.index)
    return pd.DataFrame(
        {
            "points": maxima,
            "mean": scores[questions].mean().round(2),
            "full marks": (scores[questions] >= maxima).sum(),
        }
    )


def plot(scores: pd.DataFrame, path: Path) -> Path:
    """A bar chart of each submission's per-question scores, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = list(scores.attrs["max"])
    ax = scores[questions].plot.bar(figsize=(9, 4), rot=0)
    ax.set_ylabel("points")
    ax.set_title("Review questions: score per submission")
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    plt.close(ax.figure)
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: `exercises` regenerates; `grade DIR [--out CSV]` grades a folder."""
    parser = argparse.ArgumentParser(prog="python -m opslab.grade_class")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("exercises", help="regenerate exercises/ from solutions/ with otter assign")
    grading = sub.add_parser("grade", help="grade a folder of submitted notebooks")
    grading.add_argument("submissions", type=Path)
    grading.add_argument("--autograder", type=Path, default=AUTOGRADER / "review-autograder.zip")
    grading.add_argument("--out", type=Path, default=Path("grades.csv"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "exercises":
        for master in sorted(SOLUTIONS.glob("*.ipynb")):
            log.info("%s -> %s", master.name, assign(master))
        return 0
    feedback = args.out.with_name(args.out.stem + "-feedback")
    try:
        scores = grade(args.submissions, args.autograder, feedback=feedback)
    except submission.GradingUnavailable as exc:
        log.error("cannot grade here: %s (learner code is never run outside the sandbox)", exc)
        return 2
    scores.to_csv(args.out)
    log.info("%s\n\n%s", scores.to_string(), summary(scores).to_string())
    log.info("wrote %s, %s and %s/", args.out, plot(scores, args.out.with_suffix(".png")), feedback)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
