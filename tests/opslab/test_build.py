"""The app-only release wheel, the app's Makefile and the single-file executable."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import sample_app
from opslab.build import (
    APP_DIR,
    NOT_SHIPPED,
    OPS_DIR,
    ArtefactServer,
    app_dependencies,
    base_python,
    build_app_wheel,
    clone_repo,
    compressed_sizes,
    git,
    make,
    make_version,
    sha256,
    wheel_version,
)


def test_build_app_wheel_ships_the_app_alone_stamped(tmp_path: Path) -> None:
    wheel = build_app_wheel(tmp_path, version="9.9.9", commit="c0ffee", source_date_epoch=0)
    names = zipfile.ZipFile(wheel).namelist()
    assert "sample_app/templates/base.html" in names
    assert not any(name.startswith("opslab/") for name in names)
    assert not any("node_modules" in name or name.endswith(".pyc") for name in names)
    stamped = json.loads(zipfile.ZipFile(wheel).read("sample_app/_build.json"))
    assert stamped == {"version": "9.9.9", "commit": "c0ffee", "build_time": "1970-01-01T00:00:00Z"}
    assert "-9.9.9-py3-none-any" in wheel.name  # the file name says which release it is


@pytest.mark.parametrize(
    ("stamped", "expected"),
    [("3.0.0", "3.0.0"), ("v1.2.0", "1.2.0"), ("v1.2.0-3-gabc1234", sample_app.__version__)],
)
def test_wheel_version_is_the_stamped_one_when_python_can_read_it(
    stamped: str, expected: str
) -> None:
    assert wheel_version(stamped) == expected


def test_app_dependencies_come_from_pyproject() -> None:
    deps = app_dependencies()
    assert any(dep.startswith("fastapi") for dep in deps)
    assert not any(dep.startswith(("matplotlib", "jupyterlab")) for dep in deps)


def test_build_app_wheel_same_epoch_gives_same_sha256(tmp_path: Path) -> None:
    first = build_app_wheel(tmp_path / "a", version="1.2.0", commit="c0ffee", source_date_epoch=1)
    second = build_app_wheel(tmp_path / "b", version="1.2.0", commit="c0ffee", source_date_epoch=1)
    later = build_app_wheel(tmp_path / "c", version="1.2.0", commit="c0ffee", source_date_epoch=9)
    assert sha256(first) == sha256(second)
    assert sha256(later) != sha256(first)


@pytest.mark.parametrize("target", ["version", "test", "css", "assets", "wheel", "pyz", "clean"])
def test_makefile_target_exists_in_dry_run(target: str, tmp_path: Path) -> None:
    run = make(target, dry_run=True, OUT=tmp_path)
    assert run.targets == (target,)
    if target == "wheel":
        assert "-m opslab.build wheel" in run.output
        assert "--version" in run.output
        assert "build-assets" in run.output  # assets are fingerprinted before packaging
    if target == "pyz":
        assert "-m shiv" in run.output
        assert "--reproducible" in run.output


def _makefile_tree(root: Path) -> Path:
    """A minimal app source tree (Makefile + __init__.py) outside any git repository."""
    ops = root / "sample_app" / "ops"
    ops.mkdir(parents=True)
    shutil.copy2(OPS_DIR / "Makefile", ops / "Makefile")
    shutil.copy2(APP_DIR / "__init__.py", root / "sample_app" / "__init__.py")
    return ops


def test_make_version_without_git_falls_back_to_package_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    info = make_version(_makefile_tree(tmp_path), SOURCE_DATE_EPOCH=0)
    assert info == {
        "VERSION": sample_app.__version__,
        "COMMIT": "unknown",
        "BUILD_TIME": "1970-01-01T00:00:00Z",
    }


def test_make_version_describes_tags_commits_and_dirty_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    ops = _makefile_tree(tmp_path)
    git(tmp_path, "init", "--quiet")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "--quiet", "-m", "first")
    assert make_version(ops)["VERSION"] == git(tmp_path, "rev-parse", "--short", "HEAD")
    git(tmp_path, "tag", "v1.2.0")
    assert make_version(ops)["VERSION"] == "v1.2.0"
    git(tmp_path, "commit", "--quiet", "--allow-empty", "-m", "second")
    head = git(tmp_path, "rev-parse", "--short", "HEAD")
    assert make_version(ops)["VERSION"] == f"v1.2.0-1-g{head}"
    (tmp_path / "sample_app" / "__init__.py").write_text('__version__ = "1.0.0"\n# edited\n')
    info = make_version(ops)
    assert info["VERSION"] == f"v1.2.0-1-g{head}-dirty"
    assert info["COMMIT"] == git(tmp_path, "rev-parse", "HEAD")


@pytest.mark.slow
def test_pyz_serves_ready_from_an_empty_directory(tmp_path: Path) -> None:
    # A copy of the app, so the build (fingerprinted assets) leaves the checkout untouched.
    source = tmp_path / "src"
    shutil.copytree(APP_DIR, source / "sample_app", ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    shutil.copy2(APP_DIR.parent / "pyproject.toml", source / "pyproject.toml")
    ops = source / "sample_app" / "ops"
    make(
        "clean-assets",
        "pyz",
        directory=ops,
        OUT=tmp_path,
        NODE="",
        VERSION="9.9.9",
        COMMIT="c0ffee",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [base_python(), "-I", tmp_path / "sample-app.pyz"]
    server = ArtefactServer(argv, name="pyz-test", cwd=empty, env={"SHIV_ROOT": str(tmp_path)})
    try:
        assert server.timed_start(timeout=60) > 0
        with server.client() as client:
            assert client.get("/ready").status_code == 200
            page = client.get("/").text
        assert server.version()["version"] == "9.9.9"
        assert server.version()["commit"] == "c0ffee"
        assert "/static/css/app." in page  # fingerprinted URLs, not `?v=` queries
        assert ".css?v=" not in page
    finally:
        server.stop()
    assert list(empty.iterdir()) == []


def test_clone_repo_is_clean_and_untagged(tmp_path: Path) -> None:
    clone = clone_repo(tmp_path / "clone")
    assert (clone / "sample_app" / "ops" / "Makefile").read_bytes() == (
        OPS_DIR / "Makefile"
    ).read_bytes()
    assert git(clone, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(clone, "tag") == ""
    assert not make_version(clone / "sample_app" / "ops")["VERSION"].endswith("-dirty")


def test_compressed_sizes_brotli_beats_gzip_on_the_real_css() -> None:
    sizes = compressed_sizes((APP_DIR / "static" / "css" / "app.css").read_bytes())
    assert sizes["brotli 11"] < sizes["gzip 9"] <= sizes["gzip 6"] < sizes["raw"]
