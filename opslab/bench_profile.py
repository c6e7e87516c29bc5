"""Where a served request's time goes: py-spy samples of the app under wrk, by package.

`make bench` holds the app's routes to targets (a ratio of the bare ASGI ceiling, one
worker). For a route that misses its target, `profile_route` records the app's process with
py-spy while wrk loads that route, and `profile_section` turns the samples into the report's
tables: the share of samples in each package (inclusive: a stack counts once for every
package on it) and the hottest functions by own time. That says why a target is missed.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opslab.wrk import start_wrk, wrk_result

log = logging.getLogger(__name__)

# Ratio of the bare ASGI app's req/s that each route should reach, one worker (issue 13).
TARGETS = {"health": 0.4, "todos": 0.15, "page": 0.08}
RATE_HZ = 200  # samples per second: enough for a few seconds' shares, little overhead
TOP = 12
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
STDLIB = re.compile(r"/lib/python3\.\d+/(?P<mod>[A-Za-z_]\w*)")
PACKAGE = re.compile(r"/(?:site|dist)-packages/(?P<mod>[A-Za-z_]\w*)")


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of one route, aggregated."""

    route: str
    samples: int
    by_package: Counter[str]  # inclusive: samples with the package anywhere on the stack
    by_function: Counter[str]  # own time: samples with the function at the top
    error: str = ""


def package_of(path: str) -> str:
    """The package a frame's file belongs to: the app, the toolkit, a dependency, stdlib."""
    if "/sample_app/" in path:
        return "sample_app"
    if match := PACKAGE.search(path):
        return match["mod"]
    if match := STDLIB.search(path):
        return f"{match['mod']} (stdlib)"
    return Path(path).stem or path


def parse_collapsed(text: str) -> tuple[int, Counter[str], Counter[str]]:
    """py-spy's raw (collapsed) output: `frame;frame;... count` per line, root first."""
    total, packages, functions = 0, Counter[str](), Counter[str]()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [m for f in stack.split(";") if (m := FRAME.match(f.strip()))]
        for package in {package_of(m["file"]) for m in frames}:
            packages[package] += n
        if frames:
            top = frames[-1]
            functions[f"{top['func']} ({package_of(top['file'])})"] += n
    return total, packages, functions


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def profile_route(
    route: str, pid: int, url: str, path: str, *, seconds: int, connections: int
) -> Profile:
    """Sample `pid` (and its children) with py-spy while wrk loads `url + path`."""
    spy = py_spy()
    if spy is None:
        return Profile(route, 0, Counter(), Counter(), error="py-spy is not installed")
    with tempfile.TemporaryDirectory(prefix="opslab-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil",
               "--full-filenames",
               "--rate", str(RATE_HZ), "--duration", str(seconds), "--format", "raw",
               "--output", str(out)]  # fmt: skip
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as spying:
            load = start_wrk(url, seconds=seconds, connections=connections, post_every=10**9,
                             get_path=path)  # fmt: skip
            wrk_result(load, timeout=seconds + 30)
            try:
                output, _ = spying.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                spying.kill()
                output, _ = spying.communicate()
        if spying.returncode or not out.exists():
            said = output.decode(errors="replace").strip().splitlines()
            return Profile(route, 0, Counter(), Counter(), error=(said or ["no output"])[-1])
        total, packages, functions = parse_collapsed(out.read_text())
    log.info("profiled %s: %d samples", route, total)
    return Profile(route, total, packages, functions)


def _share_rows(counter: Counter[str], total: int, top: int) -> Iterable[str]:
    for name, n in counter.most_common(top):
        yield f"| `{name}` | {n} | {100 * n / total:.0f}% |"


def profile_section(profiles: Iterable[Profile]) -> str:
    """The report's markdown for each profiled route."""
    parts = ["", "## Profiles of the routes that miss their target", ""]
    for p in profiles:
        parts.append(f"### {p.route}")
        if p.error or not p.samples:
            parts += ["", f"Not profiled: {p.error or 'py-spy recorded no samples'}.", ""]
            continue
        parts += [
            "",
            f"py-spy, {p.samples} samples at {RATE_HZ} Hz under wrk. Packages (a sample counts"
            " for every package on its stack, so shares add up to more than 100%):",
            "",
            "| package | samples | share |",
            "|---|---:|---:|",
            *_share_rows(p.by_package, p.samples, TOP),
            "",
            "Functions where the samples were taken (own time):",
            "",
            "| function | samples | share |",
            "|---|---:|---:|",
            *_share_rows(p.by_function, p.samples, TOP),
            "",
        ]
    return "\n".join(parts)
