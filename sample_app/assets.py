"""Static asset URLs with content hashes, so browsers and proxies may cache them for a year.

`python -m sample_app build-assets` (a build step) copies each asset to a name that
carries a hash of its content (`css/app.css` -> `css/app.3f2a1b9c0d4e.css`) and writes
`static/manifest.json`; templates ask `static_url("css/app.css")` for the current
name. A new release has new names, so `Cache-Control: immutable` cannot serve stale
files. Without a manifest (a source checkout) URLs get a `?v=<hash>` query instead.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
from functools import lru_cache
from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
MANIFEST_NAME = "manifest.json"
HASH_LENGTH = 12
FINGERPRINTED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
ASSET_PATTERNS = ("css/*.css", "js/*.js", "vendor/*.js")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_LENGTH]


def fingerprinted_name(path: str, data: bytes) -> str:
    """`css/app.css` -> `css/app.<hash>.css`; only the file name's last dot counts."""
    folder, name = posixpath.split(path)
    stem, dot, suffix = name.rpartition(".")
    hashed = (
        f"{stem}.{content_hash(data)}.{suffix}" if dot and stem else f"{name}.{content_hash(data)}"
    )
    return posixpath.join(folder, hashed)


def build_manifest(static_dir: Path = STATIC_DIR) -> dict[str, str]:
    """Write hashed copies of the assets and the manifest; drop hashed copies of old builds."""
    for old in static_dir.rglob("*"):
        if FINGERPRINTED.search(old.name):
            old.unlink()
    manifest: dict[str, str] = {}
    for pattern in ASSET_PATTERNS:
        for source in sorted(static_dir.glob(pattern)):
            logical = source.relative_to(static_dir).as_posix()
            hashed = fingerprinted_name(logical, source.read_bytes())
            shutil.copyfile(source, static_dir / hashed)
            manifest[logical] = hashed
    (static_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    load_manifest.cache_clear()
    return manifest


@lru_cache
def load_manifest(static_dir: Path = STATIC_DIR) -> dict[str, str]:
    """The build's manifest, read once; empty when assets were not built."""
    try:
        return dict(json.loads((static_dir / MANIFEST_NAME).read_text()))
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=256)
def _query_version(path: Path, mtime_ns: int) -> str:
    return content_hash(path.read_bytes())


def static_url(path: str, static_dir: Path = STATIC_DIR) -> str:
    """The URL for an asset: its fingerprinted name if built, else `?v=<content hash>`."""
    if hashed := load_manifest(static_dir).get(path):
        return f"/static/{hashed}"
    source = static_dir / path
    return f"/static/{path}?v={_query_version(source, source.stat().st_mtime_ns)}"
