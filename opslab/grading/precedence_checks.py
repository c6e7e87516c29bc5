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


def parse_dotenv(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines; blanks and `#` comments skipped, split at the first `=`, unquoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def reference_resolve(
    defaults: Mapping[str, str],
    dotenv_text: str,
    environ: Mapping[str, str],
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """The model answer: overrides > environment > .env > defaults, known settings only."""
    dotenv = parse_dotenv(dotenv_text)
    resolved = {}
    for name, default in defaults.items():
        env_name = name.upper()
        if name in overrides:
            resolved[name] = overrides[name]
        elif env_name in environ:
            resolved[name] = environ[env_name]
        elif env_name in dotenv:
            resolved[name] = dotenv[env_name]
        else:
            resolved[name] = default
    return resolved


DEFAULTS = {"port": "8000", "log_level": "info", "workers": "1", "database_url": "sqlite:///app.db"}

# Each case: (what it tests, defaults, .env text, environment, overrides).
CASES: dict[str, tuple[str, dict[str, str], str, dict[str, str], dict[str, str]]] = {
    "basic": (
        "each source supplies one setting",
        DEFAULTS,
        "LOG_LEVEL=debug\n",
        {"WORKERS": "4"},
        {"port": "9000"},
    ),
    "env-beats-dotenv": (
        "a real environment variable wins over the same name in .env",
        DEFAULTS,
        "PORT=7000\nWORKERS=2\n",
        {"PORT": "8080", "HOME": "/root"},
        {},
    ),
    "overrides-win": (
        "an explicit override wins over the environment and .env",
        {"port": "5000", "log_level": "warning"},
        "LOG_LEVEL=error\n",
        {"LOG_LEVEL": "debug"},
        {"log_level": "critical"},
    ),
    "dotenv-syntax": (
        "the .env text has comments, blank lines, spaces, quotes and '=' inside a value",
        DEFAULTS,
        '# local settings\n\n  LOG_LEVEL = "warning"  \n'
        "DATABASE_URL='postgresql://app@db/app?sslmode=require'\n#WORKERS=9\n",
        {},
        {},
    ),
    "unknown-names": (
        "variables that are not settings (PATH, HOME, a typo in .env) are ignored",
        {"port": "8000", "request_timeout": "30"},
        "REQUEST_TIMOUT=5\nEXTRA=1\n",
        {"PATH": "/usr/bin", "REQUEST_TIMEOUT": "10"},
        {},
    ),
    "empty-sources": (
        "with nothing set, every setting is its default",
        {"port": "8000", "instance_id": "blue"},
        "",
        {},
        {},
    ),
}


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
    what, defaults, dotenv_text, environ, overrides = CASES[case]
    args = (dict(defaults), dotenv_text, dict(environ), dict(overrides))
    got = _call(resolve, args)
    if got is None:
        raise CheckFailed("Not answered yet: resolve returned None; return a dict of settings.")
    if not isinstance(got, Mapping):
        raise CheckFailed(f"resolve should return a dict, not {type(got).__name__}.")
    if args != (dict(defaults), dotenv_text, dict(environ), dict(overrides)):
        raise CheckFailed("resolve changed one of its inputs: build a new dict instead.")
    expected = reference_resolve(*args)
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
