"""opslab.book: the config and toc the book is built from, the cache guard, a tiny real build."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from opslab import book

BASE = {
    "title": "T",
    "execute": {"execute_notebooks": "cache", "cache": "_build/.jupyter_cache"},
    "html": {"use_repository_button": True},
    "repository": {"url": "", "branch": "main"},
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "jupyterhub_url": ""},
}


def test_book_config_takes_urls_from_the_environment() -> None:
    env = {
        "OPSLAB_REPOSITORY_URL": "https://github.com/acme/ops-lab",
        "OPSLAB_JUPYTERHUB_URL": "https://hub.example.edu",
    }
    config = book.book_config(BASE, env, origin="https://github.com/other/fork")
    assert config["repository"]["url"] == "https://github.com/acme/ops-lab"
    assert config["launch_buttons"]["jupyterhub_url"] == "https://hub.example.edu"
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert BASE["repository"]["url"] == ""  # the loaded config is not modified


def test_book_config_uses_the_git_origin_by_default() -> None:
    config = book.book_config(BASE, {}, origin="https://github.com/acme/ops-lab")
    assert config["repository"]["url"] == "https://github.com/acme/ops-lab"
    assert config["html"]["use_repository_button"] is True


def test_learner_book_never_defaults_to_the_origin_holding_the_solutions(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", "git@github.com:acme/ops-lab.git")
    assert book.launch_origin(False, tmp_path) is None
    assert book.launch_origin(True, tmp_path) == "https://github.com/acme/ops-lab"


def test_book_config_without_repository_turns_buttons_off() -> None:
    config = book.book_config(BASE, {"OPSLAB_JUPYTERHUB_URL": "https://hub"}, origin=None)
    assert config["html"]["use_repository_button"] is False
    assert config["launch_buttons"]["binderhub_url"] == ""
    assert config["launch_buttons"]["jupyterhub_url"] == ""


def test_book_config_no_execute_turns_execution_off() -> None:
    config = book.book_config(BASE, {}, origin=None, execute=False)
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["execute"]["cache"] == "_build/.jupyter_cache"


def test_instructor_toc_adds_a_solution_for_each_exercise() -> None:
    toc = book.load_yaml(book.ROOT / "_toc.yml")
    instructor = book.instructor_toc(toc)
    added = instructor["parts"][-1]
    exercises = book.review_files(toc)
    assert added["caption"] == book.SOLUTIONS_CAPTION
    assert [c["file"] for c in added["chapters"]] == [
        e.replace("exercises/", "solutions/") for e in exercises
    ]
    assert instructor["parts"][:-1] == toc["parts"]


def test_instructor_toc_without_a_master_fails(tmp_path: Path) -> None:
    toc = {"root": "intro", "parts": [{"caption": "Review", "chapters": [{"file": "exercises/x"}]}]}
    with pytest.raises(FileNotFoundError, match=r"solutions/x\.ipynb"):
        book.instructor_toc(toc, tmp_path)


def test_toc_files_lists_every_page_once_in_order() -> None:
    files = book.toc_files(book.load_yaml(book.ROOT / "_toc.yml"))
    assert files[0] == "book/intro"
    assert len(files) == len(set(files))
    assert all(
        (book.ROOT / f"{f}.md").exists() or (book.ROOT / f"{f}.ipynb").exists() for f in files
    )


def git(repo: Path, *args: str) -> None:
    """Run git quietly in `repo`."""
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_refresh_cache_empties_it_when_tracked_sources_change(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "opslab").mkdir()
    (tmp_path / "opslab" / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    cache = tmp_path / "_build" / ".jupyter_cache"
    book.refresh_cache(cache, book.sources_digest(tmp_path))
    cache.mkdir(parents=True)
    (tmp_path / "opslab" / "untracked.json").write_text("{}")  # a build output: ignored
    assert book.refresh_cache(cache, book.sources_digest(tmp_path)) is False
    assert cache.exists()
    (tmp_path / "opslab" / "a.py").write_text("x = 2\n")
    assert book.refresh_cache(cache, book.sources_digest(tmp_path)) is True
    assert not cache.exists()


def test_git_origin_turns_ssh_remotes_into_https(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    assert book.git_origin(tmp_path) is None
    git(tmp_path, "remote", "add", "origin", "git@github.com:acme/ops-lab.git")
    assert book.git_origin(tmp_path) == "https://github.com/acme/ops-lab"


def test_git_origin_ignores_a_local_clone(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", "/srv/git/ops-lab")
    assert book.git_origin(tmp_path) is None


def tiny_book(root: Path) -> None:
    """A one-notebook book using the course's real _config.yml."""
    (root / "_config.yml").write_text((book.ROOT / "_config.yml").read_text())
    (root / "book" / "images").mkdir(parents=True)
    (root / "book" / "images" / "favicon.svg").write_text("<svg/>")
    (root / "intro.md").write_text("# Intro\n\nSee [the notebook](nb.ipynb).\n")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# A notebook"]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / "nb.ipynb").write_text(json.dumps(notebook))
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n      - file: nb\n"
    )
    git(root, "init", "-q")  # the book's download is the learner distribution of this tree
    git(root, "add", "-A")


@pytest.mark.slow
def test_build_makes_launch_buttons_for_binder_and_jupyterhub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_book(tmp_path)
    monkeypatch.setenv("OPSLAB_REPOSITORY_URL", "https://github.com/acme/ops-lab")
    monkeypatch.setenv("OPSLAB_JUPYTERHUB_URL", "https://hub.example.edu")
    html = book.build(execute=False, root=tmp_path, out=tmp_path)
    page = (html / "nb.html").read_text()
    assert "https://mybinder.org/v2/gh/acme/ops-lab/main?urlpath=lab/tree/nb.ipynb" in page
    assert (
        "https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A//github.com/acme/ops-lab"
        in page
    )
    assert 'href="https://github.com/acme/ops-lab"' in page  # the repository link
    assert (html / book.DOWNLOAD).is_file()
    assert "opslab-course.tar.gz" in page  # the banner's download link


def with_code_cell(root: Path, source: str) -> None:
    """Give the tiny book's notebook one code cell."""
    notebook = json.loads((root / "nb.ipynb").read_text())
    notebook["cells"].append(
        {"cell_type": "code", "id": "code", "metadata": {}, "source": [source], "outputs": [],
         "execution_count": None}
    )  # fmt: skip
    (root / "nb.ipynb").write_text(json.dumps(notebook))


@pytest.mark.slow
def test_build_fails_on_a_cell_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    tiny_book(tmp_path)
    with_code_cell(tmp_path, "raise RuntimeError('boom')")
    monkeypatch.delenv("OPSLAB_REPOSITORY_URL", raising=False)
    with pytest.raises(subprocess.CalledProcessError):
        book.build(root=tmp_path, out=tmp_path)
    assert not (tmp_path / "_build" / "html" / "nb.html").exists()
    out, err = capfd.readouterr()
    assert "Executing notebook failed: CellExecutionError" in out + err
    assert "boom" in out + err


@pytest.mark.slow
def test_build_runs_cells_and_fails_on_a_broken_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_book(tmp_path)
    with_code_cell(tmp_path, "print(6 * 7)")
    monkeypatch.delenv("OPSLAB_REPOSITORY_URL", raising=False)
    html = book.build(root=tmp_path, out=tmp_path)
    assert "42" in (html / "nb.html").read_text()
    (tmp_path / "intro.md").write_text("# Intro\n\nSee [a page](missing.md).\n")
    with pytest.raises(subprocess.CalledProcessError):
        book.build(root=tmp_path, out=tmp_path)


def test_keep_existing_static_drops_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "book" / "_static").mkdir(parents=True)
    config = {"sphinx": {"config": {"html_static_path": ["book/_static", "nowhere"]}}}
    book.keep_existing_static(config, tmp_path)
    assert config["sphinx"]["config"]["html_static_path"] == ["book/_static"]
