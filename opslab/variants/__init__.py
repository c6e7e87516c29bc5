"""Lesson variants: the real app with one deliberate mistake, run as a real process.

Some lessons compare the app with a version that makes a common mistake (metrics
labelled by raw path, streams that ignore shutdown, ...). The app itself never ships
those mistakes: a variant is a small module here with an `apply()` function that
patches the app in the server process before it starts, and
`python -m opslab.variants NAME serve ...` runs the app's CLI after applying it.
`opslab.start_app(variant="NAME")` does that for notebooks.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def available() -> list[str]:
    """The names of the variants in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def apply(name: str) -> None:
    """Import variant `name` and apply its patch to the app (in this process)."""
    if name not in available():
        raise SystemExit(f"opslab.variants: unknown variant {name!r}; known: {available()}")
    importlib.import_module(f"{__name__}.{name}").apply()


def main(argv: list[str] | None = None) -> int:
    """`python -m opslab.variants NAME <sample_app CLI arguments>`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit(f"usage: python -m opslab.variants NAME serve ... (one of {available()})")
    apply(args[0])
    from sample_app.cli import main as app_main

    return app_main(args[1:])
