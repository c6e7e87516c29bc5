"""JupyterLab as the course sets it up: no news prompt over a learner's outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from opslab.caps import strict_mode

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "binder" / "jupyterlab-overrides.json"
SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"


def test_the_news_prompt_is_off_in_the_overrides() -> None:
    notification = json.loads(OVERRIDES.read_text())["@jupyterlab/apputils-extension:notification"]
    schema = json.loads(
        (SCHEMAS / "@jupyterlab" / "apputils-extension" / "notification.json").read_text()
    )

    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    assert set(notification) <= set(schema["properties"])  # real setting names


def test_the_course_environment_has_the_overrides_installed() -> None:
    installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not installed.is_file() and not strict_mode():
        pytest.skip("not the environment `make venv` made")
    assert json.loads(installed.read_text()) == json.loads(OVERRIDES.read_text())
