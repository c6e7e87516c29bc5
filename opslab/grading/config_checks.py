"""Checks for review question 2: a configuration loader that takes secrets from the environment.

The learner's `load_config(environ=None)` reads CSRF_SECRET and DATABASE_URL from `environ`
(the process environment when None), returns an object with `.csrf_secret` and
`.database_url`, raises ValueError naming the variable for a missing, placeholder or too
short secret, and never shows the secrets in its repr.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opslab.grading.common import (
    CheckFailed,
    TimeLimitExceeded,
    friendly,
    require_answer,
    time_limit,
)
from opslab.sandbox.remote import learner_side

LIMIT_SECONDS = 5.0
Loader = Callable[..., Any]


def _call(load_config: Loader, *args: Any) -> Any:
    """Run the learner's loader under the time limit; a hang or crash becomes a message."""
    require_answer(load_config, "load_config function")
    try:
        with time_limit(LIMIT_SECONDS, "load_config"):
            return load_config(*args)
    except TimeLimitExceeded as exc:
        raise CheckFailed(str(exc)) from None


def _loaded(load_config: Loader, env: Mapping[str, str], *args: Any) -> Any:
    """The config for a valid environment, or a message saying what went wrong instead."""
    try:
        config = _call(load_config, *args)
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(
            f"load_config raised {type(exc).__name__}: {exc} for a valid environment "
            f"(variables set: {sorted(env)})."
        ) from None
    if config is None:
        raise CheckFailed("Not answered yet: load_config returned None; return the config.")
    for attr, name in (("csrf_secret", "CSRF_SECRET"), ("database_url", "DATABASE_URL")):
        got = getattr(config, attr, None)
        if got != env[name]:
            raise CheckFailed(
                f"config.{attr} should be the value of {name} from the environment it was "
                f"given. Hint: read it from `environ`, do not write the value in the code."
            )
    return config


@friendly
def check_loads(load_config: Loader, env: Mapping[str, str]) -> None:
    """A valid environment passed as an argument loads into the config."""
    _loaded(load_config, env, dict(env))


@contextlib.contextmanager
def _process_env(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@learner_side
def call_in_process_env(load_config: Loader, env: Mapping[str, str]) -> Any:
    """`load_config()` with `env` in the process environment of the learner's code."""
    with _process_env(env):
        return load_config()


@friendly
def check_loads_from_process_env(load_config: Loader, env: Mapping[str, str]) -> None:
    """Called without arguments, the loader reads the process environment."""
    require_answer(load_config, "load_config function")
    _loaded(functools.partial(call_in_process_env, load_config, env), env)


@friendly
def check_refuses(load_config: Loader, env: Mapping[str, str], name: str) -> None:
    """An environment that is wrong about `name` makes the loader raise a ValueError naming it."""
    try:
        config = _call(load_config, dict(env))
    except CheckFailed:
        raise
    except ValueError as exc:
        if name not in str(exc):
            raise CheckFailed(
                f"The error should name the variable to fix ({name}); it said: {exc}"
            ) from None
        return
    except Exception as exc:
        raise CheckFailed(
            f"Raise ValueError (or a subclass) for a bad {name}, not {type(exc).__name__}: {exc}"
        ) from None
    if config is None:
        raise CheckFailed("Not answered yet: load_config returned None.")
    raise CheckFailed(
        f"load_config accepted a bad {name} ({_describe(env.get(name))}): it should refuse "
        "to start with a clear error instead."
    )


def _describe(value: str | None) -> str:
    if value is None:
        return "not set"
    return f"{len(value)} characters" if value else "empty"


@friendly
def check_repr_hides(load_config: Loader, env: Mapping[str, str], secrets: list[str]) -> None:
    """Neither repr() nor str() of a loaded config shows any of `secrets`."""
    config = _loaded(load_config, env, dict(env))
    for shown in (repr(config), str(config)):
        leaked = [s for s in secrets if s in shown]
        if leaked:
            raise CheckFailed(
                "The config's repr shows a secret (anything printed or logged would leak it). "
                "Hint: `field(repr=False)` in a dataclass, or mask it in `__repr__`."
            )
