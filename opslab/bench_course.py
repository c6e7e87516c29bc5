"""`make bench BENCH_COURSE=1`: how long the course itself takes, per notebook and per grading.

Slow (every notebook runs top to bottom), so the default bench leaves it out. A notebook that
fails is reported as failed with its time, never dropped from the table.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SUBMISSION = ROOT / "tests" / "grading" / "submissions" / "complete.ipynb"


def _timed(cmd: list[str], *, timeout: float) -> tuple[float, str]:
    """Seconds `cmd` took and "ok" or why not."""
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.monotonic() - start, f"timed out after {timeout:g} s"
    outcome = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    if done.returncode:
        log.warning("%s: %s", " ".join(cmd), done.stderr[-2000:])
    return time.monotonic() - start, outcome


def time_notebooks(work: Path, *, timeout: float = 900) -> list[tuple[str, float, str]]:
    """Run each notebook with `jupyter nbconvert --execute`; (name, seconds, outcome)."""
    rows = []
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "notebook",
               "--output-dir", str(work), str(notebook)]  # fmt: skip
        seconds, outcome = _timed(cmd, timeout=timeout)
        log.info("%s: %.1f s, %s", notebook.name, seconds, outcome)
        rows.append((notebook.name, seconds, outcome))
    return rows


def time_grading(work: Path, *, timeout: float = 900) -> tuple[str, float, str]:
    """Grade one submission (`opslab.grade_class grade`); (what, seconds, outcome)."""
    folder = work / "submissions"
    folder.mkdir()
    shutil.copy(SUBMISSION, folder)
    cmd = [sys.executable, "-m", "opslab.grade_class", "grade", str(folder),
           "--out", str(work / "grades.csv")]  # fmt: skip
    seconds, outcome = _timed(cmd, timeout=timeout)
    return f"grading one submission ({SUBMISSION.name})", seconds, outcome


def append_course_timings(report: Path) -> None:
    """Append a table of notebook and grading times to the report."""
    with tempfile.TemporaryDirectory(prefix="opslab-bench-course-") as tmp:
        rows = time_notebooks(Path(tmp))
        rows.append(time_grading(Path(tmp)))
    lines = ["", "## The course", "", "| what | seconds | outcome |", "|---|---:|---|"]
    lines += [f"| {name} | {seconds:.1f} | {outcome} |" for name, seconds, outcome in rows]
    with report.open("a") as file:
        file.write("\n".join(lines) + "\n")
