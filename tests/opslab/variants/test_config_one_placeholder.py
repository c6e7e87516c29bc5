"""The Go chapter's production check, run through the app's real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _check_config(tmp_path: Path, module: list[str], csrf_secret: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "CSRF_SECRET"}
    env |= {"APP_ENV": "production", "CSRF_SECRET": csrf_secret}
    done = subprocess.run(
        [sys.executable, *module, "check-config"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode


@pytest.mark.parametrize(("secret", "chapter_code"), [("changeme", 0), ("default-secret", 2)])
def test_chapter_check_refuses_only_its_own_placeholder(
    tmp_path: Path, secret: str, chapter_code: int
) -> None:
    variant = ["-m", "opslab.variants", "config_one_placeholder"]
    assert _check_config(tmp_path, variant, secret) == chapter_code
    assert _check_config(tmp_path, ["-m", "sample_app"], secret) == 2
