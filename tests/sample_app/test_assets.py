"""Fingerprinted static assets and the manifest the templates use."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sample_app.assets import (
    FINGERPRINTED,
    STATIC_DIR,
    build_manifest,
    fingerprinted_name,
    load_manifest,
    static_url,
)


@pytest.fixture
def static_copy(tmp_path: Path) -> Path:
    target = tmp_path / "static"
    shutil.copytree(STATIC_DIR, target, ignore=shutil.ignore_patterns("manifest.json"))
    return target


def test_static_url_without_manifest_uses_query_hash(static_copy: Path) -> None:
    url = static_url("css/app.css", static_copy)
    assert url.startswith("/static/css/app.css?v=")


def test_build_manifest_names_change_with_content(static_copy: Path) -> None:
    first = build_manifest(static_copy)["css/app.css"]
    assert FINGERPRINTED.search(first)
    assert (static_copy / first).read_bytes() == (static_copy / "css/app.css").read_bytes()
    assert static_url("css/app.css", static_copy) == f"/static/{first}"
    (static_copy / "css/app.css").write_text("body{color:red}")
    second = build_manifest(static_copy)["css/app.css"]
    assert second != first
    assert not (static_copy / first).exists()  # the old build's copy is gone
    assert load_manifest(static_copy)["css/app.css"] == second


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("css/app.css", r"css/app\.[0-9a-f]{12}\.css"),
        ("vendor/htmx.min.js", r"vendor/htmx\.min\.[0-9a-f]{12}\.js"),
        ("v1.2/CHANGES", r"v1\.2/CHANGES\.[0-9a-f]{12}"),
        ("LICENSE", r"LICENSE\.[0-9a-f]{12}"),
    ],
)
def test_fingerprinted_name_hashes_before_the_file_extension(path: str, pattern: str) -> None:
    assert re.fullmatch(pattern, fingerprinted_name(path, b"data"))
