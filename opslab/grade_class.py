"""Instructor side of the review questions: regenerate the exercises, grade a class.

`python -m opslab.grade_class exercises` runs `otter assign` on each master notebook in
`solutions/` and writes the learner notebooks to `exercises/` and the autograder zips to
`solutions/autograder/`. `python -m opslab.grade_class grade DIR` grades every notebook in
DIR with otter's local runner (`otter run`, no Docker), each under a time limit, into a CSV
of per-question scores, a summary table and a bar plot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pandas as pd

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
AUTOGRADER = SOLUTIONS / "autograder"
SUBMISSION_TIMEOUT = 420.0  # q1b builds and runs a Dockerfile (240 s build limit) cold
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


def stable_cell_ids(notebook: Path, target: Path) -> Path:
    """Copy a notebook, replacing otter's random cell ids by ids derived from the cells.

    An id is a hash of the notebook's name, the cell's type and source (and which repeat of
    that source it is): regenerating gives the same ids, and an edit changes only its cell.
    """
    nb = nbformat.read(notebook, as_version=4)
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


def grade_one(notebook: Path, autograder_zip: Path) -> dict[str, object]:
    """One submission's per-question scores (otter's local runner, in a time-limited process)."""
    row: dict[str, object] = {"submission": notebook.stem}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opslab-grade-") as tmp:
        try:
            subprocess.run(
                [otter_bin(), "run", "--no-logo", "-a", str(autograder_zip), "-o", tmp, notebook],
                check=True,
                capture_output=True,
                timeout=SUBMISSION_TIMEOUT,
            )
            results = json.loads(Path(tmp, "results.json").read_text())
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            log.warning("could not grade %s: %s", notebook.name, exc)
            row["error"] = type(exc).__name__
            results = {"tests": []}
    for test in results["tests"]:
        if test.get("max_score") is not None:
            row[test["name"]] = test["score"]
            row[f"{test['name']} max"] = test["max_score"]
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def grade(submissions: Path, autograder_zip: Path, workers: int = 2) -> pd.DataFrame:
    """Every *.ipynb in `submissions`: one row each, question scores, total and percentage."""
    notebooks = sorted(submissions.glob("*.ipynb"))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda nb: grade_one(nb, autograder_zip), notebooks))
    table = pd.DataFrame(rows).set_index("submission")
    maxima = {c[: -len(" max")]: table[c].max() for c in table.columns if c.endswith(" max")}
    scores = table[list(maxima)].fillna(0.0)
    scores["total"] = scores.sum(axis=1)
    scores["percent"] = (100 * scores["total"] / sum(maxima.values())).round(1)
    scores["seconds"] = table["seconds"]
    if "error" in table:
        scores["error"] = table["error"]
    scores.attrs["max"] = maxima
    return scores


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per question: points available, mean score, and how many submissions got full marks."""
    questions = [c for c in scores.columns if c.startswith("q")]
    maxima = pd.Series(scores.attrs.get("max") or scores[questions].max().to_dict())
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

    questions = [c for c in scores.columns if c.startswith("q")]
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
    scores = grade(args.submissions, args.autograder)
    scores.to_csv(args.out)
    log.info("%s\n\n%s", scores.to_string(), summary(scores).to_string())
    log.info("wrote %s and %s", args.out, plot(scores, args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
