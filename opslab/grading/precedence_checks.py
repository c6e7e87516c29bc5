"""Checks for checkpoint 04: resolve settings from several sources in twelve-factor precedence.

The learner writes `resolve(defaults, dotenv_text, environ, overrides)`: every setting named
in `defaults` (lower-case names), taken from the highest source that has it: `overrides`
(lower-case names, like `Settings(port=...)`), then `environ` (upper-case names), then the
`.env` text (upper-case names), then the default. The checks compare the learner's result
with a reference on fixed cases; the hidden cases vary the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opslab.grading.common import (
    CheckFailed,
    TimeLimitExceeded,
    friendly,
    require_answer,
    time_limit,
)

LIMIT_SECONDS = 5.0


Case = tuple[str, dict[str, str], str, dict[str, str], dict[str, str]]
DEFAULTS = {"port": "8000", "log_level": "info", "workers": "1", "database_url": "sqlite:///app.db"}

# Each case: (what it tests, defaults, .env text, environment, overrides).
# Each case: (what it tests, defaults, .env text, environment, overrides). The hidden cases
# and the model answer are in opslab.grading.keys (instructors only); the public one is here,
# with its answer, so a learner's copy without the keys can run the public check.
PUBLIC_CASES: dict[str, Case] = {
    "basic": (
        "each source supplies one setting",
        DEFAULTS,
        "LOG_LEVEL=debug\n",
        {"WORKERS": "4"},
        {"port": "9000"},
    ),
}
PUBLIC_ANSWERS = {
    "basic": {
        "port": "9000",
        "log_level": "debug",
        "workers": "4",
        "database_url": "sqlite:///app.db",
    }
}


def _case(name: str) -> Case:
    """A case's inputs: the public one from here, the hidden ones from the answer keys."""
    if name in PUBLIC_CASES:
        return PUBLIC_CASES[name]
    try:
        from opslab.grading.keys.precedence import HIDDEN_CASES
    except ImportError:
        raise CheckFailed(f"Case {name!r} is checked when your notebook is graded.") from None
    return HIDDEN_CASES[name]


def reference(name: str, args: tuple[Any, ...]) -> dict[str, str]:
    """The reference answer for a case: the keys' model resolve, else the public answer."""
    try:
        from opslab.grading.keys.precedence import reference_resolve
    except ImportError:
        return dict(PUBLIC_ANSWERS[name])
    return reference_resolve(*args)


def _call(resolve: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    require_answer(resolve, "resolve function")
    if not callable(resolve):
        raise CheckFailed(f"`resolve` should be a function, not {type(resolve).__name__}.")
    try:
        with time_limit(LIMIT_SECONDS, "resolve"):
            return resolve(*args)
    except (CheckFailed, TimeLimitExceeded) as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:
        raise CheckFailed(f"resolve raised {type(exc).__name__}: {exc}") from None


@friendly
def check_resolve(resolve: Any, case: str = "basic") -> None:
    """The learner's resolve() gives the reference result for one named case."""
    what, defaults, dotenv_text, environ, overrides = _case(case)
    args = (dict(defaults), dotenv_text, dict(environ), dict(overrides))
    got = _call(resolve, args)
    if got is None:
        raise CheckFailed("Not answered yet: resolve returned None; return a dict of settings.")
    if not isinstance(got, Mapping):
        raise CheckFailed(f"resolve should return a dict, not {type(got).__name__}.")
    if args != (dict(defaults), dotenv_text, dict(environ), dict(overrides)):
        raise CheckFailed("resolve changed one of its inputs: build a new dict instead.")
    expected = reference(case, args)
    if set(got) != set(expected):
        extra, missing = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
        raise CheckFailed(
            f"Case '{case}' ({what}): the keys should be exactly the settings in `defaults`; "
            f"extra {extra}, missing {missing}. Hint: loop over `defaults`, not over the sources."
        )
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    if wrong:
        name, (value, want) = next(iter(wrong.items()))
        raise CheckFailed(
            f"Case '{case}' ({what}): {name} is {value!r}, expected {want!r}. Hint: the order "
            "is overrides, then the environment (NAME in upper case), then .env, then default."
        )
