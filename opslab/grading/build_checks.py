"""Checks for checkpoints 01 (build: `fingerprinted_name`) and 02 (images: the layer cache).

The learner's function is called with file paths and contents; its answer is compared with the
reference rule: the first 12 hex digits of the SHA-256 of the content, inserted before the
extension of the file's *name* (`css/app.css` -> `css/app.<hash>.css`; `LICENSE` ->
`LICENSE.<hash>`). Each call runs under a time limit.

Checkpoint 02 parses the learner's Dockerfile (no engine) and replays Docker's cache rule to
see which steps a change to one file rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

from opslab.grading.common import (
    NOT_ANSWERED,
    CheckFailed,
    TimeLimitExceeded,
    friendly,
    require_answer,
    time_limit,
)
from opslab.grading.dockerfile import Stage, parse_dockerfile

HASH_LENGTH = 12
SECONDS = 2.0


# The public check's case, answered, for a learner's copy without the answer keys.
PUBLIC_NAMES = {("css/app.css", "117f85041fb8"): "css/app.117f85041fb8.css"}


def expected_name(path: str, data: bytes) -> str:
    """The reference name: from the answer keys (instructors), else the public case's answer."""
    try:
        from opslab.grading.keys.fingerprint import expected_name as reference
    except ImportError:  # the learner distribution ships no keys
        digest = hashlib.sha256(data).hexdigest()[:HASH_LENGTH]
        if (path, digest) in PUBLIC_NAMES:
            return PUBLIC_NAMES[path, digest]
        raise CheckFailed(f"{path!r} is checked when your notebook is graded.") from None
    return reference(path, data)


def _call(function: Any, path: str, data: bytes) -> str:
    require_answer(function, "function `fingerprinted_name(path, data)`")
    if not callable(function):
        raise CheckFailed(
            f"`fingerprinted_name` should be a function, not {type(function).__name__}."
        )
    try:
        with time_limit(SECONDS, "fingerprinted_name"):
            result = function(path, data)
    except TimeLimitExceeded as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:
        raise CheckFailed(
            f"fingerprinted_name({path!r}, ...) raised {type(exc).__name__}: {exc}"
        ) from None
    if result is None or result is ...:
        raise CheckFailed(
            f"{NOT_ANSWERED}: fingerprinted_name returned {result!r}; return the new name."
        )
    if not isinstance(result, str):
        raise CheckFailed(f"fingerprinted_name should return a str, not {type(result).__name__}.")
    return result


@friendly
def check_fingerprint(function: Callable[[str, bytes], str], path: str, data: bytes) -> None:
    """The learner's name for (path, data) is the reference one; the message says what differs."""
    got, want = _call(function, path, data), expected_name(path, data)
    if got == want:
        return
    digest = hashlib.sha256(data).hexdigest()
    hint = "Hint: "
    if posixpath.dirname(got) != posixpath.dirname(want):
        hint += "keep the directories as they are: only the file name changes."
    elif digest[:HASH_LENGTH] not in got:
        found = re.findall(r"[0-9a-f]{8,}", got)
        hint += f"use the first {HASH_LENGTH} hex digits of hashlib.sha256(data).hexdigest()" + (
            f" (found {found[0]!r})." if found else "."
        )
    else:
        hint += "the hash goes before the extension of the file *name*, not at a dot elsewhere."
    raise CheckFailed(
        f"fingerprinted_name({path!r}, ...) returned {got!r}, expected {want!r}. {hint}"
    )


@friendly
def check_deterministic(function: Callable[[str, bytes], str], path: str, data: bytes) -> None:
    """Same content, same name (twice), and a different content gives a different name."""
    first, second = _call(function, path, data), _call(function, path, bytes(data))
    if first != second:
        raise CheckFailed(
            f"Two calls with the same content gave {first!r} and {second!r}: the name must depend "
            "only on the path and the content (no time, no random numbers)."
        )
    changed = _call(function, path, data + b"\n")
    if changed == first:
        raise CheckFailed(
            f"Changing the content kept the name {first!r}: browsers would keep the old file. "
            "Hint: hash the content `data`, not the path."
        )


# ---------------------------------------------------------------- checkpoint 02: layer cache

PIP_REQUIREMENTS = re.compile(r"\bpip3?\s+install\b.*(-r|--requirement)[\s=]+\S*requirements\.txt")


def _copy_sources(args: str) -> list[str]:
    """The build-context sources of a COPY/ADD (none for `COPY --from=...`)."""
    try:
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
    except ValueError:
        words = args.split()
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def _covers(source: str, path: str) -> bool:
    """Whether a COPY source (a file, a directory, `.` or a glob) brings `path` in."""
    source = posixpath.normpath(source.lstrip("/")) if source.strip("./") else "."
    return source == "." or path == source or path.startswith(source + "/") or fnmatch(path, source)


def _install_stages(text: str) -> list[tuple[Stage, int]]:
    """Every stage that installs requirements.txt with pip, with that instruction's index."""
    found = []
    for stage in parse_dockerfile(text):
        for index, step in enumerate(stage.instructions):
            if step.keyword == "RUN" and PIP_REQUIREMENTS.search(step.args):
                found.append((stage, index))
                break
    if not found:
        raise CheckFailed(
            "No `RUN pip install -r requirements.txt` found: the image must still install the "
            "dependencies from requirements.txt."
        )
    return found


def _install_stage(text: str) -> tuple[Stage, int]:
    """The first stage that installs requirements.txt with pip, and that instruction's index."""
    return _install_stages(text)[0]


def _rerun_in(stage: Stage, changed: str) -> list[str]:
    missed, rerun = False, []
    for step in stage.instructions:
        if step.keyword in {"COPY", "ADD"} and any(
            _covers(src, changed) for src in _copy_sources(step.args)
        ):
            missed = True
        if missed:
            rerun.append(f"{step.keyword} {step.args}")
    return rerun


def steps_rerun(text: str, changed: str) -> list[str]:
    """The instructions that a change to file `changed` rebuilds, in the stages that install.

    Docker's cache rule: a COPY/ADD whose sources include a changed file misses the cache,
    and so does every instruction after it in the stage. Every stage that runs
    `pip install -r` counts: a second stage that reinstalls after `COPY . .` would redo the
    slow work on every change however well the first one is ordered.
    """
    rerun: list[str] = []
    for stage, _ in _install_stages(text):
        rerun += _rerun_in(stage, changed)
    return rerun


def _check_same_job(text: str) -> None:
    """The Dockerfile still builds the same image: deps before install, source in, exec CMD."""
    require_answer(text, "Dockerfile (a string)")
    if not isinstance(text, str):
        raise CheckFailed("`dockerfile` should be a string holding the Dockerfile.")
    stage, install = _install_stage(text)
    before = [s for s in stage.instructions[:install] if s.keyword in {"COPY", "ADD"}]
    if not any(_covers(src, "requirements.txt") for s in before for src in _copy_sources(s.args)):
        raise CheckFailed(
            "requirements.txt is not copied into the image before `pip install -r` runs: the "
            "build would fail. Copy it first (`COPY requirements.txt .`)."
        )
    copies = [s for s in stage.instructions if s.keyword in {"COPY", "ADD"}]
    if not any(_covers(src, "app/main.py") for s in copies for src in _copy_sources(s.args)):
        raise CheckFailed("The source (app/) no longer reaches the image: keep a COPY of it.")
    if not any(PIP_REQUIREMENTS.search(step) for step in steps_rerun(text, "requirements.txt")):
        raise CheckFailed(
            "Changing requirements.txt would not rerun `pip install`: the image would keep the "
            "old dependencies. The install must come after the COPY of requirements.txt."
        )
    starts = stage.all("CMD") + stage.all("ENTRYPOINT")
    if not starts or "uvicorn" not in starts[-1].args:
        raise CheckFailed("Keep the `CMD` that starts uvicorn: the image must still run the app.")


@friendly
def check_layer_cache(dockerfile: object, changed: str) -> None:
    """The image does the same job, and a change to `changed` reuses the `pip install` layer."""
    _check_same_job(dockerfile)  # type: ignore[arg-type]
    rerun = steps_rerun(dockerfile, changed)  # type: ignore[arg-type]
    if any(PIP_REQUIREMENTS.search(step) for step in rerun):
        raise CheckFailed(
            f"Changing {changed} reruns `pip install` (steps rebuilt: {rerun[0]!r} and the "
            f"{len(rerun) - 1} after it). Hint: a COPY that brings in {changed} invalidates the "
            "cache for every step after it; copy only requirements.txt before the install, and "
            "the rest after."
        )
