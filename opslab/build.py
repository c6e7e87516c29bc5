"""Build the sample app's release artefacts: an app-only wheel, stamped with its identity.

The repository's pyproject installs the course (the app and this toolkit). A release
of the app must carry the app alone, so the wheel is built from a copy of
`sample_app/` with a small generated pyproject that takes its dependency list from
the real one: one source of truth, and nothing of the course in the artefact.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import sample_app
from sample_app.buildinfo import BuildInfo, stamp

APP_DIR = Path(sample_app.__file__).parent
REPO_DIR = APP_DIR.parent
DIST_NAME = "opslab-sample-app"
# Sources of the build that the runtime does not need.
NOT_SHIPPED = (
    "__pycache__",
    "*.pyc",
    "node_modules",
    "assets",
    "package.json",
    "package-lock.json",
)


def app_dependencies() -> list[str]:
    """The app's runtime dependencies, as the repository's pyproject declares them."""
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _pyproject(version: str) -> str:
    deps = "".join(f'    "{dep}",\n' for dep in app_dependencies())
    return (
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DIST_NAME}"\nversion = "{version}"\nrequires-python = ">=3.11"\n'
        f"dependencies = [\n{deps}]\n\n"
        '[project.scripts]\nsample-app = "sample_app.cli:main"\n\n'
        '[tool.setuptools.packages.find]\ninclude = ["sample_app*"]\n\n'
        "[tool.setuptools.package-data]\n"
        'sample_app = ["templates/**/*", "static/**/*", "ops/**/*", "_build.json"]\n'
    )


def stage_app_source(target: Path, **build_info: str | None) -> BuildInfo:
    """Copy the app into `target` with a stamped `_build.json` and an app-only pyproject."""
    shutil.copytree(APP_DIR, target / "sample_app", ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    info = stamp(**build_info, path=target / "sample_app" / "_build.json")
    (target / "pyproject.toml").write_text(_pyproject(sample_app.__version__))
    return info


def build_app_wheel(
    out_dir: str | os.PathLike[str],
    *,
    version: str | None = None,
    commit: str | None = None,
    build_time: str | None = None,
    source_date_epoch: int | None = None,
) -> Path:
    """Build the app-only wheel into `out_dir` and return its path.

    With `source_date_epoch` set (SOURCE_DATE_EPOCH), file times inside the wheel are
    fixed, so two builds of the same commit give the same bytes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
        build_time = build_time or datetime.fromtimestamp(source_date_epoch, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    with tempfile.TemporaryDirectory(prefix="opslab-build-") as tmp:
        stage_app_source(Path(tmp), version=version, commit=commit, build_time=build_time)
        before = set(out.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "--wheel-dir", str(out), tmp],
            env=env, check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    built = sorted(set(out.glob(f"{DIST_NAME.replace('-', '_')}-*.whl")) - before) or sorted(
        out.glob(f"{DIST_NAME.replace('-', '_')}-{sample_app.__version__}-*.whl")
    )
    return built[-1]
