"""`python -m opslab.bench` tiny load: positive ratios in the report, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

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
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$",
                      report, re.MULTILINE)  # fmt: skip
    assert [row[0] for row in rows] == [
        "bare ASGI hello, 1 worker (ceiling)",
        "app /api/todos (10 todos), 1 worker",
        "/api/todos via nginx, upstream keep-alive on",
    ]
    for _, rps, ratio, p99, p99_ratio, _failed in rows:
        assert min(float(rps), float(ratio), float(p99), float(p99_ratio)) > 0
    assert _processes_with(marker) == []


def test_bench_unknown_row_is_refused() -> None:
    cmd = [sys.executable, "-m", "opslab.bench", "--rows", "nope"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown rows: nope" in done.stderr
