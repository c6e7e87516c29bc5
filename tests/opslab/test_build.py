"""The app-only release wheel."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from opslab.build import app_dependencies, build_app_wheel


def test_build_app_wheel_ships_the_app_alone_stamped(tmp_path: Path) -> None:
    wheel = build_app_wheel(tmp_path, version="9.9.9", commit="c0ffee", source_date_epoch=0)
    names = zipfile.ZipFile(wheel).namelist()
    assert "sample_app/templates/base.html" in names
    assert not any(name.startswith("opslab/") for name in names)
    assert not any("node_modules" in name or name.endswith(".pyc") for name in names)
    stamped = json.loads(zipfile.ZipFile(wheel).read("sample_app/_build.json"))
    assert stamped == {"version": "9.9.9", "commit": "c0ffee", "build_time": "1970-01-01T00:00:00Z"}


def test_app_dependencies_come_from_pyproject() -> None:
    deps = app_dependencies()
    assert any(dep.startswith("fastapi") for dep in deps)
    assert not any(dep.startswith(("matplotlib", "jupyterlab")) for dep in deps)
