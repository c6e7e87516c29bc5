"""Build the course as a Jupyter Book: the learner book, or the instructor book with solutions.

`python -m opslab.book build` writes `_build/html` from `_config.yml` and `_toc.yml`, running
every notebook (unchanged ones come from the execution cache) and failing on any cell error
or Sphinx warning. `--instructor` adds a "Solutions" part (solutions/X for each exercises/X of
the toc) and writes `_build/instructor/_build/html`. Launch-button URLs come from the
environment, so an instructor publishes for their own repository and JupyterHub without
editing the config:

- OPSLAB_REPOSITORY_URL: the repository, i.e. the learner distribution (`make learner-dist`);
  unset: no buttons in the learner book (the instructor book defaults to the git origin);
- OPSLAB_BINDERHUB_URL: the BinderHub (default: `_config.yml`'s, https://mybinder.org);
- OPSLAB_JUPYTERHUB_URL: a JupyterHub with nbgitpuller (default: none, no button).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
LEARNER_HTML = BUILD / "html"
INSTRUCTOR_OUT = BUILD / "instructor"
INSTRUCTOR_HTML = INSTRUCTOR_OUT / "_build" / "html"
SOLUTIONS_CAPTION = "Solutions (instructors)"
DOWNLOAD = "opslab-course.tar.gz"  # the learner distribution, at the site's root
# What the notebooks run besides their own cells: a change here makes cached outputs stale.
SOURCES = ("sample_app", "opslab", "requirements.txt", "pyproject.toml")


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def git_origin(root: Path = ROOT) -> str | None:
    """The https URL of the git remote "origin", or None without one."""
    result = subprocess.run(
        ["git", "-C", str(root), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    )
    url = result.stdout.strip()
    if result.returncode or not url:
        return None
    # git@github.com:org/repo.git -> https://github.com/org/repo
    url = re.sub(r"^git@([^:]+):", r"https://\1/", url)
    if not url.startswith(("https://", "http://")):
        return None  # a clone of a local folder: nothing a launch button could open
    return url.removesuffix(".git")


def launch_origin(instructor: bool, root: Path = ROOT) -> str | None:
    """The default repository for launch buttons: the origin for the (private) instructor book
    only. This repository holds the solutions and the hidden tests, so the learner book's
    buttons point only where OPSLAB_REPOSITORY_URL says (the learner distribution)."""
    return git_origin(root) if instructor else None


def book_config(
    base: Mapping[str, Any], env: Mapping[str, str], *, origin: str | None, execute: bool = True
) -> dict[str, Any]:
    """`_config.yml` with the launch URLs from `env`; no repository means no buttons."""
    config = copy.deepcopy(dict(base))
    repository = config.setdefault("repository", {})
    launch = config.setdefault("launch_buttons", {})
    repository["url"] = env.get("OPSLAB_REPOSITORY_URL") or repository.get("url") or origin or ""
    launch["binderhub_url"] = env.get("OPSLAB_BINDERHUB_URL", launch.get("binderhub_url", ""))
    launch["jupyterhub_url"] = env.get("OPSLAB_JUPYTERHUB_URL", launch.get("jupyterhub_url", ""))
    if not repository["url"]:
        # Jupyter Book refuses repository and launch buttons without a repository URL.
        log.warning("no repository URL (OPSLAB_REPOSITORY_URL): no launch buttons")
        config.setdefault("html", {})["use_repository_button"] = False
        launch["binderhub_url"] = launch["jupyterhub_url"] = ""
    if not execute:
        config["execute"] = {**config.get("execute", {}), "execute_notebooks": "off"}
    return config


def keep_existing_static(config: dict[str, Any], root: Path) -> None:
    """Drop `html_static_path` folders that `root` lacks (a test's small book has no CSS):
    Sphinx warns about each, and the book is built with warnings as errors."""
    sphinx = config.get("sphinx", {}).get("config", {})
    if "html_static_path" in sphinx:
        sphinx["html_static_path"] = [p for p in sphinx["html_static_path"] if (root / p).is_dir()]


def toc_files(toc: Mapping[str, Any]) -> list[str]:
    """Every document of the toc in reading order: the root, then each part's chapters."""
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def review_files(toc: Mapping[str, Any], caption: str = "Review") -> list[str]:
    """The exercise notebooks of the toc's "Review" part, in order."""
    for part in toc.get("parts", []):
        if part.get("caption") == caption:
            return [c["file"] for c in part["chapters"] if c["file"].startswith("exercises/")]
    raise ValueError(f"_toc.yml has no part {caption!r}")


def instructor_toc(toc: Mapping[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """The toc plus a part with the solution (master) notebook of each exercise."""
    solutions = []
    for exercise in review_files(toc):
        solution = "solutions/" + exercise.removeprefix("exercises/")
        if not (root / f"{solution}.ipynb").exists():
            raise FileNotFoundError(f"{exercise} has no master {solution}.ipynb")
        solutions.append({"file": solution})
    instructor = copy.deepcopy(dict(toc))
    instructor["parts"] = [
        *instructor["parts"],
        {"caption": SOLUTIONS_CAPTION, "chapters": solutions},
    ]
    return instructor


def write_yaml(data: Mapping[str, Any], path: Path) -> Path:
    """Write a mapping as YAML, making the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def sources_digest(root: Path = ROOT) -> str:
    """A hash of the tracked app and toolkit files that notebook outputs depend on.

    Only files under version control count: the notebooks themselves write build outputs
    (fingerprinted assets, manifests) into the app's folders.
    """
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--", *SOURCES],
        capture_output=True,
        check=False,
    )
    if listed.returncode:
        log.warning("not a git checkout: the execution cache is not trusted, notebooks re-run")
        return f"no-git-{time.time()}"
    digest = hashlib.sha256()
    for name in sorted(filter(None, listed.stdout.decode().split("\0"))):
        path = root / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def refresh_cache(cache: Path, digest: str) -> bool:
    """Empty the execution cache when the sources changed since it was filled; True if emptied.

    The cache keys a notebook by its code cells only: without this, a notebook whose cells did
    not change would keep showing outputs of the old app.
    """
    stamp = cache.parent / "opslab-sources.sha256"
    stale = stamp.exists() and stamp.read_text().strip() != digest
    if stale or not stamp.exists():
        shutil.rmtree(cache, ignore_errors=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return stale


def jupyter_book() -> str:
    """The jupyter-book command next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).with_name("jupyter-book")
    return str(here) if here.exists() else "jupyter-book"


def build(
    *, instructor: bool = False, execute: bool = True, root: Path = ROOT, out: Path | None = None
) -> Path:
    """Build the book strictly (-W -n --keep-going); return the HTML folder."""
    flavour = "instructor" if instructor else "learner"
    out = out or (INSTRUCTOR_OUT if instructor else root)
    config = book_config(
        load_yaml(root / "_config.yml"), os.environ, origin=launch_origin(instructor, root),
        execute=execute,
    )  # fmt: skip
    keep_existing_static(config, root)
    toc = load_yaml(root / "_toc.yml")
    if instructor:
        toc = instructor_toc(toc, root)
    if execute and refresh_cache(root / config["execute"]["cache"], sources_digest(root)):
        log.info("the app or toolkit changed: execution cache emptied, every notebook re-runs")
    generated = root / "_build" / "config" / flavour
    config_path = write_yaml(config, generated / "_config.yml")
    toc_path = write_yaml(toc, generated / "_toc.yml")
    command = [
        jupyter_book(), "build", str(root), "--config", str(config_path), "--toc", str(toc_path),
        "--path-output", str(out), "-W", "-n", "--keep-going",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=root)
    html = out / "_build" / "html"
    publish_download(html, root)
    log.info("%s book built in %.0f s", flavour, time.monotonic() - started)
    return html


def publish_download(html: Path, root: Path = ROOT) -> Path:
    """The learner distribution as `DOWNLOAD` at the site's root, where every page's banner
    links: what `make lab` needs, without solutions or hidden tests."""
    from opslab import dist

    built = dist.build(root / "_build" / "learner", root)
    target = html / DOWNLOAD
    shutil.copyfile(built.with_name(built.name + ".tar.gz"), target)
    return target


def _drop_duplicate_scripts(
    app: object, pagename: str, templatename: str, context: dict[str, Any], doctree: object
) -> None:
    """Keep the first of identical <script> entries of a page.

    sphinx-thebe 0.3 registers its inline configuration twice under Sphinx 7 (and
    sphinx-togglebutton its selector), and the second `const THEBE_JS_URL` is a JavaScript
    error on every page.
    """
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        # The same inline script is registered once with filename None and once with "".
        name = getattr(script, "filename", script) or ""
        key = (str(name), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (`sphinx.extra_extensions` in _config.yml): small fixes to the pages."""
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m opslab.book build [--instructor] [--no-execute]`."""
    parser = argparse.ArgumentParser(
        prog="python -m opslab.book", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the book into _build/html")
    cmd.add_argument("--instructor", action="store_true", help="include the solutions")
    cmd.add_argument("--no-execute", action="store_true", help="do not run the notebooks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="opslab.book: %(message)s")
    try:
        html = build(instructor=args.instructor, execute=not args.no_execute)
    except subprocess.CalledProcessError as failure:
        print(
            f"opslab.book: the build failed (exit {failure.returncode}); see above.",
            file=sys.stderr,
        )
        return 1
    print(f"opslab.book: open {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
