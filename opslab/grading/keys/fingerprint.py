"""Checkpoint 01's model answer: the fingerprinted name of a file (instructors only)."""

from __future__ import annotations

import hashlib
import posixpath

HASH_LENGTH = 12


def expected_name(path: str, data: bytes) -> str:
    """The reference answer: the hash goes before the last extension of the file name."""
    digest = hashlib.sha256(data).hexdigest()[:HASH_LENGTH]
    folder, name = posixpath.split(path)
    stem, dot, suffix = name.rpartition(".")
    hashed = f"{stem}.{digest}.{suffix}" if dot and stem else f"{name}.{digest}"
    return posixpath.join(folder, hashed) if folder else hashed
