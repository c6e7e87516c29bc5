"""`python -m opslab.bench` tiny load: positive ratios in the report, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from opslab import bench_course

ROOT = Path(__file__).resolve().parents[2]


def _processes_with(marker: str) -> list[int]:
    """Our processes whose environment carries `marker` (the bench and all it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_bench_tiny_load_writes_report_and_stops_servers(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("wrk")
    require_tool("nginx")
    marker = f"OPSLAB_BENCH_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    cmd = [sys.executable, "-m", "opslab.bench", "--out", str(tmp_path), "--duration", "1",
           "--connections", "2", "--rounds", "1", "--rows", "todos,nginx-keepalive"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "report.md").read_text()
    assert (tmp_path / "serving.png").stat().st_size > 0
    assert f"cores (os.cpu_count()): {os.cpu_count()}" in report
    row_re = r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| [\d /]+ \|$"
    rows = re.findall(row_re, report, re.MULTILINE)
    assert [row[0] for row in rows] == [
        "bare ASGI hello, 1 worker (ceiling)",
        "app /api/todos (10 todos), 1 worker",
        "/api/todos via nginx, upstream keep-alive on",
    ]
    for _, rps, ratio, p99, p99_ratio, _failed in rows:
        assert min(float(rps), float(ratio), float(p99), float(p99_ratio)) > 0
    # /api/todos has a target; missed, the report carries py-spy's profile of it.
    target = re.search(r"^\| app /api/todos \(10 todos\), 1 worker \| 0\.15 \| ([\d.]+) \|", report,
                       re.MULTILINE)  # fmt: skip
    assert target is not None, report
    if float(target[1]) < 0.15:
        profile = report.split("## Profiles of the routes that miss their target", 1)[1]
        assert "### app /api/todos (10 todos), 1 worker" in profile
        assert "| `sample_app` |" in profile, profile  # the app's own frames were sampled
    assert _processes_with(marker) == []


def test_bench_unknown_row_is_refused() -> None:
    cmd = [sys.executable, "-m", "opslab.bench", "--rows", "nope"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown rows: nope" in done.stderr


def test_course_timings_table_lists_each_notebook_and_grading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name, source in (("00-ok.ipynb", "1 + 1"), ("01-broken.ipynb", "1 / 0")):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]),
                       notebooks / name)  # fmt: skip
    monkeypatch.setattr(bench_course, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(bench_course, "time_grading", lambda work: ("grading", 1.5, "ok"))
    report = tmp_path / "report.md"
    report.write_text("# Serving benchmark\n")
    bench_course.append_course_timings(report)
    text = report.read_text()
    assert re.search(r"^\| 00-ok.ipynb \| [\d.]+ \| ok \|$", text, re.MULTILINE)
    assert re.search(r"^\| 01-broken.ipynb \| [\d.]+ \| failed \(exit 1\) \|$", text, re.MULTILINE)
    assert "| grading | 1.5 | ok |" in text
