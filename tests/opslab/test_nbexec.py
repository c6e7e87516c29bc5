"""opslab.nbexec: each notebook once, failures reported, outputs handed to the book's cache."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from opslab import book, nbexec

from .test_book import git, tiny_book, with_code_cell

pytestmark = pytest.mark.slow


def notebook(path: Path, *sources: str, measures: bool = False) -> Path:
    """A notebook of code cells (python3 kernel), optionally marked as measuring timings."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if measures:
        nb.metadata.opslab = {"measures": True}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def minimal_root(root: Path) -> Path:
    """A folder with the execution settings of the course's _config.yml, as a git checkout."""
    (root / "_config.yml").write_text((book.ROOT / "_config.yml").read_text())
    git(root, "init", "-q")
    return root


def rendezvous(folder: Path, name: str) -> str:
    """A cell that says it started, then waits (at most 120 s) until two notebooks have."""
    return (
        "import pathlib, time\n"
        f"here = pathlib.Path({str(folder)!r})\n"
        f"(here / {name + '.started'!r}).touch()\n"
        "deadline = time.monotonic() + 120\n"
        "while len(list(here.glob('*.started'))) < 2:\n"
        "    assert time.monotonic() < deadline, 'the other notebook never started'\n"
        "    time.sleep(0.05)\n"
        f"(here / {name + '.done'!r}).touch()"
    )


def after_both(folder: Path) -> str:
    """A cell that fails unless both other notebooks had finished before it ran."""
    return f"import pathlib\nassert len(list(pathlib.Path({str(folder)!r}).glob('*.done'))) == 2"


def test_failing_cell_is_reported_with_its_source_and_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    minimal_root(tmp_path)
    bad = notebook(tmp_path / "bad.ipynb", "x = 1", "assert x == 2, 'x should be 2'")
    code = nbexec.main([str(bad)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out
    assert "assert x == 2, 'x should be 2'" in out  # the cell
    assert "AssertionError: x should be 2" in out  # and what it raised
    assert "\x1b[" not in out  # no terminal colours in a CI log


def test_measuring_notebooks_run_alone_after_the_others(tmp_path: Path) -> None:
    minimal_root(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    paths = [
        notebook(tmp_path / "timed.ipynb", after_both(marks), measures=True),
        notebook(tmp_path / "a.ipynb", rendezvous(marks, "a")),  # each waits for the other:
        notebook(tmp_path / "b.ipynb", rendezvous(marks, "b")),  # run one by one, both fail
    ]
    outcomes = nbexec.run(paths, jobs=2, root=tmp_path)
    assert [(o.path.name, o.ok) for o in outcomes] == [
        ("timed.ipynb", True), ("a.ipynb", True), ("b.ipynb", True)
    ], [o.error for o in outcomes]  # fmt: skip


def test_strict_run_feeds_the_book_which_runs_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_book(tmp_path)
    runs = tmp_path / "runs.txt"
    with_code_cell(tmp_path, f"open({str(runs)!r}, 'a').write('ran\\n'); print(6 * 7)")
    git(tmp_path, "add", "-A")
    monkeypatch.setenv("OPSLAB_STRICT", "1")
    monkeypatch.delenv("OPSLAB_MISSING_TOOLS", raising=False)
    monkeypatch.delenv("OPSLAB_REPOSITORY_URL", raising=False)

    outcomes = nbexec.run([tmp_path / "nb.ipynb"], root=tmp_path)
    assert [o.ok for o in outcomes] == [True]
    html = book.build(root=tmp_path, out=tmp_path)

    assert runs.read_text() == "ran\n"  # executed once, by nbexec, not again by the book
    assert "42" in (html / "nb.html").read_text()  # the page shows nbexec's output
    again = nbexec.run([tmp_path / "nb.ipynb"], root=tmp_path)
    assert [o.cached for o in again] == [True]
    assert runs.read_text() == "ran\n"


def test_kind_run_keeps_nothing_for_the_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    minimal_root(tmp_path)
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)
    path = notebook(tmp_path / "nb.ipynb", "print('a learner run')")
    assert [o.ok for o in nbexec.run([path], root=tmp_path)] == [True]
    assert [o.cached for o in nbexec.run([path], root=tmp_path)] == [False]  # ran again


def test_missing_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nbexec.main([str(tmp_path / "nope.ipynb")]) == 2
    assert "not a notebook or a folder of notebooks" in capsys.readouterr().err
