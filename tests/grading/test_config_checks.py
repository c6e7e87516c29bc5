"""The configuration loader checks of review question 2b, on good, cheating and hanging loaders."""

from __future__ import annotations

import time
from typing import Any

from opslab import grading
from opslab.grading import config_checks

GOOD = {"CSRF_SECRET": "s" * 40, "DATABASE_URL": "postgresql://app@db/app"}
OTHER = {"CSRF_SECRET": "Qm9" * 14, "DATABASE_URL": "postgresql://u:Pw0rd@h/db"}


def test_model_loader_passes_every_check(master: dict[str, Any]) -> None:
    load = master["load_config"]
    assert grading.check_loads(load, GOOD) is None
    assert grading.check_loads(load, OTHER) is None
    assert grading.check_loads_from_process_env(load, OTHER) is None
    assert (
        grading.check_refuses(load, {"CSRF_SECRET": "x" * 31, "DATABASE_URL": "d"}, "CSRF_SECRET")
        is None
    )
    assert grading.check_refuses(load, {"CSRF_SECRET": "x" * 40}, "DATABASE_URL") is None
    assert grading.check_repr_hides(load, OTHER, ["Qm9Qm9", "Pw0rd"]) is None


def test_given_stub_reports_not_answered(exercise: dict[str, Any]) -> None:
    assert "Not answered yet" in repr(grading.check_loads(exercise["load_config"], GOOD))


def test_hard_coded_loader_fails_other_values() -> None:
    def cheat(environ: dict[str, str] | None = None) -> Any:
        return type("C", (), {"csrf_secret": "s" * 40, "database_url": GOOD["DATABASE_URL"]})()

    assert grading.check_loads(cheat, GOOD) is None
    assert "do not write the value in the code" in repr(grading.check_loads(cheat, OTHER))


def test_loader_that_hangs_is_cut_off(monkeypatch) -> None:
    monkeypatch.setattr(config_checks, "LIMIT_SECONDS", 0.3)

    def hang(environ: dict[str, str] | None = None) -> None:
        while True:
            time.sleep(0.01)

    assert "was stopped" in repr(grading.check_loads(hang, GOOD))


def test_loader_with_leaky_repr_fails() -> None:
    class Config:
        def __init__(self, environ: dict[str, str]) -> None:
            self.csrf_secret = environ["CSRF_SECRET"]
            self.database_url = environ["DATABASE_URL"]

        def __repr__(self) -> str:
            return f"Config({self.csrf_secret!r})"

    assert "shows a secret" in repr(grading.check_repr_hides(Config, OTHER, [OTHER["CSRF_SECRET"]]))
