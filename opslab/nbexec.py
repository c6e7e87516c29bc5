"""Run the course's notebooks once: check every cell, and keep the outputs for the book.

`python -m opslab.nbexec [PATH...] [--jobs N] [--force]` runs each notebook top to bottom
with nbclient, exactly as the book's build would (same kernel, working directory and cell
timeout), fails a notebook on its first cell error or timeout, and stores each executed
notebook in the book's execution cache. `make book` and `make book-instructor` then publish
these outputs instead of running every notebook a second time.

Notebooks whose metadata says `"opslab": {"measures": true}` assert on what they time: they
run one at a time, after the others, with nothing else running. The rest run `--jobs` at a
time. A notebook the cache already holds for the same code and the same app and toolkit
(`opslab.book.sources_digest`) passed before and is not run again, unless `--force`.

Outputs are cached only in strict mode (OPSLAB_STRICT=1, no OPSLAB_MISSING_TOOLS): a
learner's run may skip the cells of a missing tool, and no published page shows a skip.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat

from opslab import book, caps

log = logging.getLogger(__name__)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What a failure shows: the end of the traceback (the assertion and its message).
TRACEBACK_LINES = 25


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What running one notebook gave: its executed JSON, or the failing cell's report."""

    path: Path
    seconds: float
    executed: str | None = None  # nbformat JSON of the executed notebook
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The notebooks named, folders expanded to their `*.ipynb` (sorted, no checkpoints)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            found += sorted(p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{raw}: not a notebook or a folder of notebooks")
    return list(dict.fromkeys(found))


def measures(nb: nbformat.NotebookNode) -> bool:
    """Whether the notebook asserts on timings (it then runs alone)."""
    return bool(nb.metadata.get("opslab", {}).get("measures", False))


def may_cache() -> bool:
    """Outputs may feed the book only from a run where no cell could have been skipped."""
    return caps.strict_mode() and not os.environ.get(caps.MISSING_TOOLS_VAR, "").strip()


def failure_report(err: BaseException) -> str:
    """The failing cell and the end of its traceback, without terminal colours."""
    lines = ANSI.sub("", str(err)).strip().splitlines()
    if len(lines) > TRACEBACK_LINES * 2:
        lines = [*lines[:TRACEBACK_LINES], "[...]", *lines[-TRACEBACK_LINES:]]
    return "\n".join(lines)


def execute(path: Path, timeout: int) -> Outcome:
    """Run one notebook in its own folder (runs in a worker process)."""
    from jupyter_cache.executors.utils import single_nb_execution

    started = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    try:
        result = single_nb_execution(nb, cwd=str(path.parent), timeout=timeout, allow_errors=False)
    except Exception as err:  # the kernel died, or would not start: not a cell's error
        report = f"{type(err).__name__}: {ANSI.sub('', str(err))}"
        return Outcome(path, time.monotonic() - started, error=report)
    if result.err is not None:
        return Outcome(path, result.time, error=failure_report(result.err))
    return Outcome(path, result.time, executed=nbformat.writes(result.nb))


def _run_pool(paths: Sequence[Path], jobs: int, timeout: int) -> list[Outcome]:
    """Run `paths` at most `jobs` at a time, each in a fresh process; in completion order."""
    if not paths:
        return []
    outcomes = []
    spawn = multiprocessing.get_context("spawn")  # no inherited threads or event loops
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        futures = {pool.submit(execute, path, timeout): path for path in paths}
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            state = "passed" if outcome.ok else "FAILED"
            log.info("%s %s in %.1f s", state, _rel(outcome.path), outcome.seconds)
            outcomes.append(outcome)
    return outcomes


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(book.ROOT))
    except ValueError:
        return str(path)


def run(
    paths: Sequence[Path], *, jobs: int = 2, force: bool = False, root: Path = book.ROOT
) -> list[Outcome]:
    """Run every notebook not already cached; cache the ones that passed (strict mode).
    `root` is the book's: its `_config.yml` gives the cache and the cell timeout."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    config = book.load_yaml(root / "_config.yml")["execute"]
    cache_path = root / config["cache"]
    book.refresh_cache(cache_path, book.sources_digest(root))
    cache = get_cache(str(cache_path))
    to_run, outcomes = [], []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            hit = None if force else cache.match_cache_notebook(nb)
        except KeyError:
            hit = None
        if hit is not None:
            outcomes.append(Outcome(path, hit.data.get("execution_seconds", 0.0), cached=True))
        else:
            to_run.append((path, measures(nb)))
    parallel = [path for path, timed in to_run if not timed]
    alone = [path for path, timed in to_run if timed]
    outcomes += _run_pool(parallel, jobs, config["timeout"])
    outcomes += _run_pool(alone, 1, config["timeout"])
    if may_cache():
        for outcome in outcomes:
            if outcome.executed is not None:
                bundle = CacheBundleIn(
                    nbformat.reads(outcome.executed, as_version=4),
                    str(outcome.path),
                    data={"execution_seconds": outcome.seconds},
                )
                cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
    else:
        log.info("not strict (no OPSLAB_STRICT=1): these outputs are not kept for the book")
    return sorted(outcomes, key=lambda o: paths.index(o.path))


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line per notebook, then the failures in full."""
    lines = []
    for o in outcomes:
        state = "cached" if o.cached else ("passed" if o.ok else "FAILED")
        lines.append(f"{state:>7} {o.seconds:7.1f} s  {_rel(o.path)}")
    for o in outcomes:
        if not o.ok:
            lines += ["", f"=== {_rel(o.path)} ===", o.error or ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m opslab.nbexec [PATH...] [--jobs N] [--force]`."""
    parser = argparse.ArgumentParser(
        prog="python -m opslab.nbexec", description=__doc__.split("\n")[0]
    )
    parser.add_argument("paths", nargs="*", default=["notebooks", "exercises", "solutions"])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--force", action="store_true", help="run cached notebooks too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="opslab.nbexec: %(message)s")
    try:
        paths = discover(args.paths)
    except FileNotFoundError as missing:
        print(f"opslab.nbexec: {missing}", file=sys.stderr)
        return 2
    started = time.monotonic()
    outcomes = run(paths, jobs=max(1, args.jobs), force=args.force)
    print(summary(outcomes))
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
