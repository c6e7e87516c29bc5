"""Version, commit and build time: stamped into the package at build time.

Go stamps these with `go build -ldflags "-X main.Version=..."`. The Python analogue
is to write them into a file of the package before it is built (`sample_app stamp`,
which the Makefile and the Dockerfile run), so the wheel or image carries its own
identity. Precedence: the stamped `_build.json`, then APP_VERSION / GIT_COMMIT /
BUILD_TIME in the environment, then "dev" fallbacks for an unbuilt checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sample_app import __version__

STAMP_FILE = Path(__file__).with_name("_build.json")


@dataclass(frozen=True)
class BuildInfo:
    """What `/version` and `sample_app version` report."""

    version: str
    commit: str
    build_time: str
    python: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def get_build_info() -> BuildInfo:
    """The running build's identity (stamped, else from the environment, else 'dev')."""
    stamped: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):  # not built: an editable checkout
        stamped = json.loads(STAMP_FILE.read_text())
    return BuildInfo(
        version=stamped.get("version") or os.environ.get("APP_VERSION") or f"{__version__}+dev",
        commit=stamped.get("commit") or os.environ.get("GIT_COMMIT") or "unknown",
        build_time=stamped.get("build_time") or os.environ.get("BUILD_TIME") or "unknown",
        python=platform.python_version(),
    )


def describe_git(cwd: Path | None = None) -> tuple[str, str]:
    """(`git describe --tags --always --dirty`, full commit) or ("", "") outside git."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=10
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        return git("describe", "--tags", "--always", "--dirty"), git("rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return "", ""


def stamp(
    version: str | None = None,
    commit: str | None = None,
    build_time: str | None = None,
    path: Path | None = None,
) -> BuildInfo:
    """Write `_build.json`; unset fields come from git and the clock (SOURCE_DATE_EPOCH wins)."""
    described, full_commit = describe_git(Path(__file__).parent)
    if build_time is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
        build_time = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    info = BuildInfo(
        version=version or described or __version__,
        commit=commit or full_commit or "unknown",
        build_time=build_time,
        python=platform.python_version(),
    )
    fields = {k: v for k, v in info.as_dict().items() if k != "python"}
    (path or STAMP_FILE).write_text(json.dumps(fields, indent=2) + "\n")
    return info
