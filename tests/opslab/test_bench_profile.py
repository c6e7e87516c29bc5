"""opslab.bench_profile: py-spy's collapsed stacks turned into shares by package and function."""

from __future__ import annotations

from opslab.bench_profile import package_of, parse_collapsed, profile_section

SITE = "/venv/lib/python3.11/site-packages"
STACKS = f"""\
run (/usr/lib/python3.11/asyncio/runners.py:118);handle (/app/sample_app/main.py:40);\
validate ({SITE}/pydantic/main.py:12) 30
run (/usr/lib/python3.11/asyncio/runners.py:118);handle (/app/sample_app/main.py:40);\
execute ({SITE}/sqlalchemy/engine/base.py:99);execute ({SITE}/sqlalchemy/engine/base.py:120) 50
run (/usr/lib/python3.11/asyncio/runners.py:118);select (/usr/lib/python3.11/selectors.py:468) 20
not a stack line
"""


def test_package_of_names_the_app_dependencies_and_stdlib() -> None:
    assert package_of("/srv/x/sample_app/routes/todos.py") == "sample_app"
    assert package_of(f"{SITE}/starlette/routing.py") == "starlette"
    assert package_of("/usr/lib/python3.11/logging/__init__.py") == "logging (stdlib)"


def test_parse_collapsed_counts_each_package_once_per_stack() -> None:
    total, packages, functions = parse_collapsed(STACKS)
    assert total == 100
    assert packages["asyncio (stdlib)"] == 100
    assert packages["sample_app"] == 80
    assert packages["sqlalchemy"] == 50  # two sqlalchemy frames on one stack: counted once
    assert functions.most_common(1) == [("execute (sqlalchemy)", 50)]
    assert functions["select (selectors (stdlib))"] == 20


def test_profile_section_says_why_a_route_was_not_profiled() -> None:
    from collections import Counter

    from opslab.bench_profile import Profile

    text = profile_section([Profile("app /health", 0, Counter(), Counter(), error="no ptrace")])
    assert "### app /health" in text
    assert "Not profiled: no ptrace." in text
