"""The learner distribution: the course without its answers, for launch buttons and nbgitpuller.

`python -m opslab.dist [OUT]` (`make learner-dist`) copies the tracked files a learner needs
(notebooks, exercises, the app, the toolkit, the book's pages, Binder's files, the Makefile)
into OUT (default `_build/learner`) as a git repository of one commit, and packs the same
files into `OUT.tar.gz`. Left out: `solutions/` (the masters and the autograder zips with the
hidden tests), `opslab/grading/keys/` (model answers and hidden cases), `tests/`, CI files
and anything built. Publish OUT as the repository that
Binder and nbgitpuller links point at; the instructor's repository keeps the answers.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "_build" / "learner"
EXCLUDED = (
    "solutions/", "tests/", ".ci/", "_build/", ".github/",
    "opslab/grading/keys/",  # the model answers and hidden cases the checks compare with
)  # fmt: skip
EPOCH = 315532800  # 1980-01-01: the same files make the same archive


def learner_files(root: Path = ROOT) -> list[str]:
    """The tracked files a learner gets: everything but the answers, the tests and CI."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = sorted({f for f in listed.split("\0") if f})
    return [f for f in files if not f.startswith(EXCLUDED) and (root / f).is_file()]


def build(out: Path = OUT, root: Path = ROOT) -> Path:
    """Write the distribution to `out` (a fresh git repository) and `out`.tar.gz."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = learner_files(root)
    for name in files:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    git = ["git", "-C", str(out), "-c", "user.name=Ops Lab", "-c", "user.email=opslab@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Ops Lab: learner distribution"], check=True)
    archive = out.with_name(out.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for name in files:
            info = tar.gettarinfo(str(root / name), arcname=f"opslab-course/{name}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            with (root / name).open("rb") as handle:
                tar.addfile(info, handle)
    log.info("learner distribution: %s (%d files) and %s", out, len(files), archive)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: build the learner distribution."""
    parser = argparse.ArgumentParser(prog="python -m opslab.dist", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
