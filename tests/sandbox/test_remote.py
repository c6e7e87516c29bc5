"""Learner objects seen from the judge: rebuilt exceptions, learner-side functions."""

from __future__ import annotations

from typing import Any

import pytest

from opslab.grading.common import CheckFailed, TimeLimitExceeded
from opslab.sandbox import remote


def test_rebuild_keeps_the_builtin_family_and_the_name() -> None:
    error = remote.rebuild({"type": "ConfigError", "bases": ["ValueError", "Exception"],
                            "message": "CSRF_SECRET is missing"})  # fmt: skip
    assert isinstance(error, ValueError)
    assert type(error).__name__ == "ConfigError"
    assert str(error) == "CSRF_SECRET is missing"


def test_rebuild_never_makes_a_non_exception_or_a_base_exception() -> None:
    for bases in (["SystemExit"], ["KeyboardInterrupt"], ["object"], ["print"]):
        error = remote.rebuild({"type": "X", "bases": bases, "message": "m"})
        assert isinstance(error, Exception)


def test_rebuild_course_errors_by_name() -> None:
    assert type(remote.rebuild({"bases": ["CheckFailed"], "message": "m"})) is CheckFailed
    assert type(remote.rebuild({"bases": ["TimeLimitExceeded"]})) is TimeLimitExceeded


class _Channel:
    def __init__(self) -> None:
        self.probes: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, handle: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return ("called", handle, args)

    def probe(self, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.probes.append((fn, args))
        return "from the sandbox"


@remote.learner_side
def _observe(answer: Any, n: int) -> Any:
    return answer(n)


def test_learner_side_runs_locally_or_in_the_sandbox() -> None:
    assert _observe(lambda n: n * 2, 4) == 8
    channel = _Channel()
    proxy = remote.RemoteCallable(channel, {"id": 7, "kind": "callable", "repr": "<f>"}, {})
    assert _observe(proxy, 4) == "from the sandbox"
    assert channel.probes[0][0].endswith(":_observe")
    assert proxy(1) == ("called", 7, (1,))


def test_remote_exposes_only_its_data_snapshot() -> None:
    proxy = remote.Remote(_Channel(), {"id": 1, "type": "Config", "repr": "Config()"},
                          {"database_url": "sqlite://"})  # fmt: skip
    assert proxy.database_url == "sqlite://"
    assert repr(proxy) == "Config()"
    with pytest.raises(AttributeError):
        _ = proxy.csrf_secret
    assert not remote.is_host_network(proxy)
