"""Learner objects seen from the judge: proxies that hold a number, never the object.

A check written for the learner's own kernel (`check_loads(load_config, env)`) runs in the
judge unchanged: `load_config` there is a `RemoteCallable`, and calling it asks the sandbox to
call the real function and send the result back as data (`opslab.sandbox.wire`). An exception
comes back as a rebuilt one of the same builtin family (a `ConfigError(ValueError)` is caught by
`except ValueError`). A class answer cannot be driven across a pipe: the course function that
exercises it is marked `@learner_side`, and runs next to the learner's code, in the sandbox,
returning data.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
LEARNER_SIDE: dict[str, Callable[..., Any]] = {}
HOST_NETWORK: dict[str, Callable[..., Any]] = {}


class Channel(Protocol):
    """What a proxy needs from the judge's connection to the sandbox."""

    def call(self, handle: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...

    def probe(self, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...


class Remote:
    """A learner object that stays in the sandbox; the judge sees only its snapshot."""

    def __init__(self, channel: Channel, data: dict[str, Any], attrs: dict[str, Any]) -> None:
        self._channel, self._id = channel, int(data["id"])
        self._kind, self._type = str(data.get("kind")), str(data.get("type"))
        self._repr, self._str = str(data.get("repr", "")), str(data.get("str", ""))
        self._attrs = attrs

    def __repr__(self) -> str:
        return self._repr

    def __str__(self) -> str:
        return self._str

    def __getattr__(self, name: str) -> Any:
        attrs = self.__dict__.get("_attrs", {})
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"{self._type} object has no data attribute {name!r}")

    @property
    def remote_id(self) -> int:
        return self._id


class RemoteCallable(Remote):
    """A learner function or class: calling it runs it in the sandbox, under its time limit."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self._id, args, kwargs)


def learner_side(function: F) -> F:
    """Mark a course function that must run where the learner's code is.

    Called with a local object (the learner's own kernel) it just runs. Called with a
    `Remote` first argument (the judge), it runs in the sandbox and its result comes back as
    data; whatever it returns is then judged by the caller, in the judge.
    """
    name = key(function)
    LEARNER_SIDE[name] = function

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Remote):
            return args[0]._channel.probe(name, args, kwargs)
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def key(function: Callable[..., Any]) -> str:
    """`module:qualname`: how a course function is named across the sandbox's wall."""
    return f"{function.__module__}:{function.__qualname__}"


def host_network(function: F) -> F:
    """Mark a check that drives the host's container engine: the judge runs it in the host's
    network (its own is loopback only), as a subprocess given the answer as data."""
    HOST_NETWORK[key(function)] = function
    return function


def is_host_network(function: object) -> bool:
    if isinstance(function, Remote) or not callable(function):
        return False
    return HOST_NETWORK.get(key(function)) is function


def _course_errors() -> dict[str, type[BaseException]]:
    from opslab.grading.common import CheckFailed, TimeLimitExceeded

    return {"CheckFailed": CheckFailed, "TimeLimitExceeded": TimeLimitExceeded}


def _rebuilt_errors() -> tuple[type[BaseException], ...]:
    return tuple(_course_errors().values())


def is_course_error(exc: BaseException) -> bool:
    """Whether `exc` is one of the course's own check errors (rebuilt by name, not by family)."""
    return isinstance(exc, _rebuilt_errors())


def rebuild(info: dict[str, Any]) -> BaseException:
    """The exception a learner's code raised, as a local one of the same family.

    Only the course's own check errors and builtin exception classes are ever instantiated;
    the name the learner gave their class is kept for messages.
    """
    name, message = str(info.get("type", "Exception"))[:200], str(info.get("message", ""))
    bases = [str(b) for b in info.get("bases", []) if isinstance(b, str)]
    course = _course_errors()
    if bases and bases[0] in course:
        return course[bases[0]](message)
    for base in bases:
        found = getattr(builtins, base, None)
        if isinstance(found, type) and issubclass(found, Exception):
            if found.__name__ == name:
                return found(message)
            return type(name, (found,), {"__module__": "learner"})(message)
    return type(name, (Exception,), {"__module__": "learner"})(message)
