"""The secret scanners against real files, archives, a git repository and an image."""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from opslab import leaks

SECRET = "s3cr3t-" + "x7Qp" * 8


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree: the secret in one file, near-misses in others."""
    root = tmp_path / "src"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "config.py").write_text(f'A = 1\nSESSION_SECRET = "{SECRET}"\n')
    (root / "pkg" / "other.py").write_text(f'PREFIX = "{SECRET[:-1]}"\n')  # one char short
    (root / "README.md").write_text("no secrets here\n")
    return root


def test_scan_tree_finds_secret_with_file_and_line(tree: Path) -> None:
    found = leaks.scan_tree(tree, SECRET)
    assert [(leak.where, leak.line) for leak in found] == [("pkg/config.py", 2)]
    assert SECRET not in found[0].excerpt
    assert leaks.mask(SECRET) in found[0].excerpt


def test_scan_tree_clean_tree_reports_nothing(tree: Path) -> None:
    assert leaks.scan_tree(tree, "another-" + secrets.token_hex(16)) == []


def test_scan_zip_finds_secret_in_wheel_member(tree: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:  # compressed, like pip's
        for path in tree.rglob("*.py"):
            archive.write(path, path.relative_to(tree).as_posix())
    found = leaks.scan_path(wheel, SECRET)
    assert [leak.where for leak in found] == [f"{wheel}!pkg/config.py"]
    assert leaks.scan_zip(wheel, SECRET + "-rotated") == []


def test_scan_tar_finds_secret_in_nested_layer(tmp_path: Path) -> None:
    layer = _tar_bytes({"app/config.py": f"KEY = '{SECRET}'\n".encode(), "app/x.py": b"x"})
    image = tmp_path / "image.tar"
    image.write_bytes(_tar_bytes({"abc123.tar": layer, "manifest.json": b"[]"}))
    found = leaks.scan_tar(image, SECRET)
    assert [leak.where for leak in found] == [f"{image}!abc123.tar!app/config.py"]


def test_scan_tar_gzip_layer_blob_is_opened(tmp_path: Path) -> None:
    import gzip

    layer = gzip.compress(_tar_bytes({"etc/app.env": f"SECRET={SECRET}\n".encode()}))
    archive = tmp_path / "oci.tar"
    archive.write_bytes(_tar_bytes({"blobs/sha256/aa11": layer, "blobs/sha256/bb22": b"{}"}))
    found = leaks.scan_tar(archive, SECRET)
    assert [leak.where for leak in found] == [f"{archive}!blobs/sha256/aa11!etc/app.env"]


def test_scan_tree_opens_archives_found_in_it(tree: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    with zipfile.ZipFile(dist / "app.whl", "w") as archive:
        archive.write(tree / "pkg" / "config.py", "pkg/config.py")
    assert [leak.where for leak in leaks.scan_tree(dist, SECRET)] == ["app.whl!pkg/config.py"]


def test_scan_bytes_reports_each_line_once() -> None:
    data = f"one\n{SECRET} and {SECRET}\nthree {SECRET}".encode()
    assert [leak.line for leak in leaks.scan_bytes(data, SECRET, "blob")] == [2, 3]


def test_scan_git_history_finds_secret_removed_later(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("git")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]

    def git(*args: str) -> None:
        subprocess.run(["git", *identity, *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "--quiet")
    (tmp_path / "config.py").write_text(f'SECRET = "{SECRET}"\n')
    git("add", ".")
    git("commit", "--quiet", "-m", "add config")
    (tmp_path / "config.py").write_text('SECRET = os.environ["SECRET"]\n')
    git("commit", "--quiet", "-am", "read the secret from the environment")
    assert leaks.scan_tree(tmp_path, SECRET) == []  # .git's objects are compressed
    found = leaks.scan_git_history(tmp_path, SECRET)
    assert [leak.where.split(" ", 2)[2] for leak in found] == [
        "read the secret from the environment",  # the removal shows the old line
        "add config",
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scan_image_finds_secret_in_layer_and_config(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("container-engine")
    from opslab import containers

    engine = containers.engine()
    try:
        base, _ = containers.ensure_base_image(engine.client)
        (tmp_path / "app").mkdir()
        (tmp_path / "app" / "config.py").write_text(f'SECRET = "{SECRET}"\n')
        (tmp_path / "Dockerfile").write_text(
            f"FROM {base}\nARG TOKEN\nENV TOKEN=$TOKEN\nCOPY app /app\n"
        )
        tag = "localhost/opslab-test-leaks:latest"
        built = containers.build_image(
            engine.client, tmp_path, tag=tag, buildargs={"TOKEN": SECRET}
        )
        places = {leak.where.split("!")[-1] for leak in leaks.scan_image(built.image, SECRET)}
        engine.client.images.remove(tag, force=True)
    finally:
        if engine.service is not None:
            engine.service.stop()
    assert {"app/config.py", "image config"} <= places
