"""Build the sample app's release artefacts: an app-only wheel, stamped with its identity.

The repository's pyproject installs the course (the app and this toolkit). A release
of the app must carry the app alone, so the wheel is built from a copy of
`sample_app/` with a small generated pyproject that takes its dependency list from
the real one: one source of truth, and nothing of the course in the artefact.

The app's pipeline is `sample_app/ops/Makefile`; `make()` runs its targets, and the
Makefile's `wheel` target calls `python -m opslab.build wheel`. `ArtefactServer` runs a
built artefact (an installed wheel, a .pyz) under the plain interpreter, no venv.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import InvalidVersion, Version

import sample_app
from opslab.app import AppServer
from sample_app.buildinfo import BuildInfo, stamp

APP_DIR = Path(sample_app.__file__).parent
REPO_DIR = APP_DIR.parent
OPS_DIR = APP_DIR / "ops"
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
    (target / "pyproject.toml").write_text(_pyproject(wheel_version(info.version)))
    return info


def wheel_version(stamped: str) -> str:
    """The wheel's own version: the stamped one when it is a valid Python (PEP 440)
    version, so a release's file name says what it is; else the package's."""
    try:
        return str(Version(stamped.removeprefix("v")))
    except InvalidVersion:  # e.g. `git describe`'s v1.2.0-3-gabc1234
        return sample_app.__version__


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
        info = stage_app_source(Path(tmp), version=version, commit=commit, build_time=build_time)
        before = set(out.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "--wheel-dir", str(out), tmp],
            env=env, check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    built = sorted(set(out.glob(f"{DIST_NAME.replace('-', '_')}-*.whl")) - before) or sorted(
        out.glob(f"{DIST_NAME.replace('-', '_')}-{wheel_version(info.version)}-*.whl")
    )
    return built[-1]


@dataclass(frozen=True)
class MakeRun:
    """One `make` invocation: what it printed and how long it took."""

    targets: tuple[str, ...]
    output: str
    seconds: float


def make(
    *targets: str,
    directory: str | os.PathLike[str] = OPS_DIR,
    dry_run: bool = False,
    **variables: object,
) -> MakeRun:
    """Run `make -C directory TARGETS VAR=value...` (PYTHON defaults to this interpreter)."""
    variables.setdefault("PYTHON", sys.executable)
    cmd = ["make", "--no-print-directory", "-C", os.fspath(directory), *(["-n"] if dry_run else [])]
    cmd += [*targets, *(f"{key}={value}" for key, value in variables.items())]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return MakeRun(tuple(targets), done.stdout, seconds)


def make_version(directory: str | os.PathLike[str] = OPS_DIR, **variables: str) -> dict[str, str]:
    """What `make version` says the next build will carry: VERSION, COMMIT, BUILD_TIME."""
    lines = make("version", directory=directory, **variables).output.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def git(cwd: str | os.PathLike[str], *args: str) -> str:
    """Run git in `cwd` (with a fixed identity for commits) and return its stripped stdout."""
    identity = ["-c", "user.name=Ops Lab", "-c", "user.email=opslab@example.invalid"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def clone_repo(dest: str | os.PathLike[str]) -> Path:
    """A fresh clone of this repository's last commit, without its tags, at `dest`.

    The working tree's app Makefile is committed into the clone, so the pipeline there is
    the one you are reading even before it is committed here.
    """
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    git(REPO_DIR, "clone", "--quiet", "--no-tags", str(REPO_DIR), str(dest))
    (dest / "sample_app" / "ops").mkdir(exist_ok=True)
    shutil.copy2(OPS_DIR / "Makefile", dest / "sample_app" / "ops" / "Makefile")
    git(dest, "add", "sample_app/ops/Makefile")
    git(dest, "commit", "--quiet", "--allow-empty", "-m", "Build pipeline from the working tree")
    return dest


def sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def base_python() -> str:
    """The interpreter this venv was made from: Python itself, without the venv's packages."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def install_wheel(wheel: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """`pip install --target`: the wheel and its dependencies in one fresh, plain directory."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", os.fspath(target), os.fspath(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return Path(target)


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of every file under `path`."""
    return sum(
        f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink()
    )


class ArtefactServer(AppServer):
    """The app run from a built artefact, e.g. `[python, "app.pyz"]`, with `serve` appended."""

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name=name, cwd=cwd, env=env)
        self.cmd = [*map(os.fspath, argv), "serve", "--host", self.host, "--port", str(self.port)]

    def timed_start(self, timeout: float = 60.0) -> float:
        """Start and return the seconds until `/ready` answered 200."""
        started = time.perf_counter()
        self.start(timeout=timeout)
        return time.perf_counter() - started


def compressed_sizes(data: bytes) -> dict[str, int]:
    """Bytes on the wire: raw, gzip at levels 6 and 9, Brotli at quality 11 (its best)."""
    import brotli  # the `brotli` package: only the asset-size lesson needs it

    return {
        "raw": len(data),
        "gzip 6": len(gzip.compress(data, compresslevel=6, mtime=0)),
        "gzip 9": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "brotli 11": len(brotli.compress(data, quality=11)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m opslab.build wheel --out DIR ...`: what the Makefile's `wheel` target runs."""
    parser = argparse.ArgumentParser(prog="python -m opslab.build")
    sub = parser.add_subparsers(dest="command", required=True)
    wheel = sub.add_parser("wheel", help="build the stamped app-only wheel")
    wheel.add_argument("--out", required=True)
    wheel.add_argument("--version")
    wheel.add_argument("--commit")
    wheel.add_argument("--build-time", dest="build_time")
    wheel.add_argument("--source-date-epoch", dest="source_date_epoch", type=int)
    args = parser.parse_args(argv)
    path = build_app_wheel(
        args.out,
        version=args.version or None,
        commit=args.commit or None,
        build_time=args.build_time or None,
        source_date_epoch=args.source_date_epoch,
    )
    print(f"wheel: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
