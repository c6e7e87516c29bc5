"""The class's learners: the roster (names and scrypt hashes, 0600), their Unix users, and
their submissions collected for `make grade` (`python -m opslab.hub learners|collect`)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import secrets
import subprocess
from pathlib import Path

from opslab import hub_classes

STATE = Path(__file__).resolve().parent.parent / "_build" / "hub" / "state"
LEARNER_GROUP = "opslab-learners"
# The hub creates a learner's Unix user at first login: a home only they can read.
ADD_USER = ["useradd", "--create-home", "--key", "HOME_MODE=0700", "--shell", "/bin/bash",
            "--groups", LEARNER_GROUP]  # fmt: skip
LEARNER_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_SUBMISSION = 8 * 2**20  # a notebook with its outputs; anything larger is refused


def private_file(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, never readable even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def add_learners(names: list[str], state: Path = STATE) -> dict[str, str]:
    """Put learners on the roster with new random passwords; returns {name: password}."""
    roster_path = state / "roster.json"
    roster = json.loads(roster_path.read_text()) if roster_path.exists() else {}
    passwords = {}
    for name in names:
        if not LEARNER_NAME.fullmatch(name):
            raise ValueError(f"not a Unix user name ({LEARNER_NAME.pattern}): {name!r}")
        passwords[name] = secrets.token_urlsafe(12)
        roster[name] = hub_classes.hash_password(passwords[name])
    private_file(roster_path, json.dumps(roster, indent=1))
    return passwords


def remove_learners(names: list[str], state: Path = STATE) -> list[str]:
    """Take learners off the roster and delete their Unix users and homes (only users in the
    learners' group: never anyone else); returns the users deleted."""
    roster_path = state / "roster.json"
    roster = json.loads(roster_path.read_text()) if roster_path.exists() else {}
    deleted = []
    for name in names:
        roster.pop(name, None)
        try:
            member = LEARNER_GROUP in _groups_of(name)
        except KeyError:
            continue
        if member:
            hub_classes.kill_all(hub_classes.cgroup_dirs(name))
            subprocess.run(["userdel", "--remove", name], stderr=subprocess.DEVNULL, check=True)
            deleted.append(name)
    if roster_path.exists():
        private_file(roster_path, json.dumps(roster, indent=1))
    return deleted


def _groups_of(name: str) -> set[str]:
    pwd.getpwnam(name)  # KeyError: no such user
    return {g.gr_name for g in grp.getgrall() if name in g.gr_mem}


def collect(assignment: str, out: Path, names: list[str] | None = None) -> dict[str, str]:
    """Copy each learner's `exercises/ASSIGNMENT.ipynb` to OUT/LEARNER.ipynb (for `make grade`);
    returns {learner: "collected" or why not}. The file is read as the learner (setpriv),
    so a symlink in a home reaches nothing the learner could not read anyway."""
    if not re.fullmatch(r"[a-z0-9-]+", assignment):
        raise ValueError(f"not an assignment name: {assignment!r}")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = names if names is not None else grp.getgrnam(LEARNER_GROUP).gr_mem
    verdicts = {}
    for name in sorted(names):
        entry = pwd.getpwnam(name)
        path = Path(entry.pw_dir) / hub_classes.COURSE_DIR / "exercises" / f"{assignment}.ipynb"
        read = subprocess.run(
            [*hub_classes.become(name), "head", "-c", str(MAX_SUBMISSION + 1), "--", str(path)],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if read.returncode != 0:
            verdicts[name] = f"not collected: {read.stderr.decode(errors='replace').strip()}"
        elif len(read.stdout) > MAX_SUBMISSION:
            verdicts[name] = f"not collected: larger than {MAX_SUBMISSION // 2**20} MB"
        else:
            (out / f"{name}.ipynb").write_bytes(read.stdout)
            verdicts[name] = "collected"
    return verdicts
