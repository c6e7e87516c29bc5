"""Lesson variants run the real app with one patch applied."""

from __future__ import annotations

import subprocess
import sys

import httpx

from opslab import start_app
from opslab.variants import available


def test_available_lists_variant_modules() -> None:
    assert "metrics_off" in available()


def test_unknown_variant_exits_with_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opslab.variants", "no_such_thing", "version"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "unknown variant 'no_such_thing'" in result.stderr


def test_start_app_with_variant_applies_it() -> None:
    with start_app(name="test-variant", variant="metrics_off") as app:
        assert httpx.get(f"{app.url}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{app.url}/ready", timeout=5).status_code == 200
