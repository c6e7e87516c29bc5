"""Choice answers, unanswered values and the time limit on learner code."""

from __future__ import annotations

import time

import pytest

from opslab import grading
from opslab.grading import build_checks


def test_check_choices_right_set_passes() -> None:
    assert grading.check_choices({"a", "C"}, "ABCDEF", key="AC") is None


def test_check_choices_wrong_set_counts_mistakes() -> None:
    assert "2 statement(s)" in repr(grading.check_choices({"A", "B", "C", "D"}, "ABCDEF", key="AC"))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(..., "Not answered yet"), ("AC", "not str"), ({"Z"}, "Unknown letter")],
)
def test_check_choices_malformed_answer_explains(answer: object, expected: str) -> None:
    failure = grading.check_choices(answer, "ABCDEF")
    assert isinstance(failure, grading.Failed)
    assert expected in failure.message


def _spin(limit: float) -> None:
    with grading.time_limit(limit):
        while True:
            time.sleep(0.01)


def test_time_limit_stops_a_hanging_call() -> None:
    started = time.monotonic()
    with pytest.raises(grading.TimeLimitExceeded, match=r"still running after 0\.3 s"):
        _spin(0.3)
    assert time.monotonic() - started < 2


def _swallows_exceptions(path: str, data: bytes) -> str:
    while True:
        try:  # noqa: SIM105 - the learner's mistake under test
            time.sleep(0.1)
        except Exception:
            pass


@pytest.mark.timeout(20, method="thread")  # without the fix the loop never ends
def test_time_limit_not_swallowed_by_except_exception() -> None:
    started = time.monotonic()
    failure = build_checks.check_fingerprint(_swallows_exceptions, "a.css", b"x")
    assert isinstance(failure, grading.Failed)
    assert "still running after" in failure.message
    assert time.monotonic() - started < build_checks.SECONDS + 2
