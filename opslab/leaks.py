"""Find a secret string in what a build leaves behind: files, wheels, image layers, git history.

A secret written into code does not stay in the code: it is copied into every artefact
built from it (a wheel is a zip of the source, an image layer a tar of it) and into the
repository's history. These scanners look for the exact bytes of one known secret,
opening archives inside archives (a layer tar inside `docker save`'s tar, a wheel in a
directory), and report where it was found with the secret itself masked.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ZIP_SUFFIXES = (".whl", ".zip", ".pyz", ".egg")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
EXCERPT_CHARS = 100


@dataclass(frozen=True)
class Leak:
    """One place the secret was found: where (file, archive member, commit...) and the line."""

    where: str
    line: int
    excerpt: str


def mask(secret: str) -> str:
    """How a secret appears in reports: its first 4 characters and its length."""
    return f"{secret[:4]}…[{len(secret)} chars]"


def _excerpt(line: bytes, secret: bytes) -> str:
    """The line around the first match, with the secret masked (long lines are cut)."""
    at = line.find(secret)
    start = max(0, at - EXCERPT_CHARS // 2)
    window = line[start : at + len(secret) + EXCERPT_CHARS // 2]
    text = window.decode("utf-8", errors="replace").strip()
    text = text.replace(secret.decode("utf-8", errors="replace"), mask(secret.decode()))
    return ("…" if start else "") + text + ("…" if len(window) < len(line) - start else "")


def scan_bytes(data: bytes, secret: str, where: str) -> list[Leak]:
    """Every line of `data` that contains the secret (binary files count lines too)."""
    needle = secret.encode()
    if not needle or needle not in data:
        return []
    found, last_line = [], -1
    for match in re.finditer(re.escape(needle), data):
        number = data.count(b"\n", 0, match.start()) + 1
        if number == last_line:  # one report per line
            continue
        start = data.rfind(b"\n", 0, match.start()) + 1
        end = data.find(b"\n", match.end())
        line = data[start : end if end != -1 else len(data)]
        found.append(Leak(where, number, _excerpt(line, needle)))
        last_line = number
    return found


def _is_zip(name: str) -> bool:
    return name.lower().endswith(ZIP_SUFFIXES)


def _is_tar(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def _scan_member(data: bytes, name: str, secret: str, where: str) -> list[Leak]:
    """A file found anywhere: searched itself, and opened if it is an archive."""
    if _is_zip(name) and zipfile.is_zipfile(io.BytesIO(data)):
        return scan_zip(io.BytesIO(data), secret, where=where)
    if _is_tar(name):
        return scan_tar(io.BytesIO(data), secret, where=where)
    return scan_bytes(data, secret, where)


def scan_zip(
    source: str | os.PathLike[str] | IO[bytes], secret: str, *, where: str = ""
) -> list[Leak]:
    """Every member of a zip archive (a wheel, a .pyz), archives inside it included."""
    prefix = where or ("zip" if hasattr(source, "read") else os.fspath(source))  # type: ignore[arg-type]
    found: list[Leak] = []
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                data = archive.read(info)
                found += _scan_member(data, info.filename, secret, f"{prefix}!{info.filename}")
    return found


def scan_tar(
    source: str | os.PathLike[str] | IO[bytes], secret: str, *, where: str = ""
) -> list[Leak]:
    """Every file of a tar (compressed or not), read as a stream; tars inside are opened too.

    `docker save` writes a tar whose layers are tars themselves: streaming mode reads
    each member once, in order, so a large image is never held in memory whole.
    """
    is_file = hasattr(source, "read")
    prefix = where or ("tar" if is_file else os.fspath(source))  # type: ignore[arg-type]
    opened = {"fileobj": source} if is_file else {"name": source}
    found: list[Leak] = []
    with tarfile.open(mode="r|*", **opened) as tar:  # type: ignore[call-overload]
        for member in tar:
            if not member.isfile() or (stream := tar.extractfile(member)) is None:
                continue
            name = f"{prefix}!{member.name}"
            if member.name.endswith(".tar"):
                found += scan_tar(stream, secret, where=name)  # a layer: stream it too
            elif _is_layer_blob(member.name):
                found += _scan_blob(stream.read(), secret, name)
            else:
                found += _scan_member(stream.read(), member.name, secret, name)
    return found


def _is_layer_blob(name: str) -> bool:
    """OCI archives name layers by digest only (`blobs/sha256/<hex>`): try them as tars."""
    return name.startswith("blobs/sha256/")


def _scan_blob(data: bytes, secret: str, where: str) -> list[Leak]:
    """A content-addressed blob: a (possibly compressed) layer tar, or JSON metadata."""
    try:
        return scan_tar(io.BytesIO(data), secret, where=where)
    except tarfile.ReadError:
        return scan_bytes(data, secret, where)


def scan_tree(root: str | os.PathLike[str], secret: str) -> list[Leak]:
    """Every file under `root` (archives opened), paths reported relative to `root`."""
    root = Path(root)
    found: list[Leak] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = str(path.relative_to(root))
        if _is_tar(path.name):
            found += scan_tar(path, secret, where=relative)
        else:
            found += _scan_member(path.read_bytes(), path.name, secret, relative)
    return found


def scan_path(path: str | os.PathLike[str], secret: str) -> list[Leak]:
    """A directory, a zip-like archive, a tar, or a plain file: whichever `path` is."""
    path = Path(path)
    if path.is_dir():
        return scan_tree(path, secret)
    if _is_zip(path.name):
        return scan_zip(path, secret)
    if _is_tar(path.name):
        return scan_tar(path, secret)
    return scan_bytes(path.read_bytes(), secret, str(path))


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (the Docker API's `image.save()`)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def scan_image(image: Any, secret: str) -> list[Leak]:
    """A Docker-API image: its history (build instructions), its config and every layer."""
    found: list[Leak] = []
    for number, layer in enumerate(image.history()):
        found += scan_bytes((layer.get("CreatedBy") or "").encode(), secret, f"history #{number}")
    config = json.dumps(image.attrs.get("Config") or {}).encode()
    found += scan_bytes(config, secret, "image config")
    reader = io.BufferedReader(_ChunkReader(image.save(chunk_size=1 << 20)), 1 << 20)
    return found + scan_tar(reader, secret, where="image")


def scan_git_history(repo: str | os.PathLike[str], secret: str) -> list[Leak]:
    """Every commit whose patch adds or removes the secret (`git log -p --all`)."""
    done = subprocess.run(
        ["git", "log", "-p", "--all", "--format=commit %h %s"],
        cwd=repo, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    found: list[Leak] = []
    commit = "?"
    for number, line in enumerate(done.stdout.split(b"\n"), start=1):
        if line.startswith(b"commit "):
            commit = line.decode(errors="replace")[7:]
        elif secret.encode() in line:
            found.append(Leak(f"commit {commit}", number, _excerpt(line, secret.encode())))
    return found
