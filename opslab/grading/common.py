"""What every check shares: failures as plain messages, unanswered answers, a time limit."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec

P = ParamSpec("P")

NOT_ANSWERED = "Not answered yet"


class CheckFailed(AssertionError):  # noqa: N818 - reads as the sentence otter shows
    """An answer did not pass a check; the message says why and what to try."""


class TimeLimitExceeded(BaseException):  # a BaseException: see the docstring
    """Learner code ran longer than its time limit.

    A BaseException, like KeyboardInterrupt: learner code's `except Exception:` cannot
    swallow it and keep running past the limit.
    """


class Failed:
    """A failed check, returned rather than raised: doctest then shows its message, no traceback."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"✗ {self.message}"


def friendly(check: Callable[P, None]) -> Callable[P, Failed | None]:
    """Turn a check that raises CheckFailed into one that returns None (passed) or a Failed."""

    @functools.wraps(check)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Failed | None:
        try:
            check(*args, **kwargs)
        except CheckFailed as failure:
            return Failed(str(failure))
        return None

    return wrapper


def require_answer(value: Any, what: str) -> None:
    """Fail with "not answered yet" when the answer is still the placeholder `...` or None."""
    if value is ... or value is None:
        raise CheckFailed(f"{NOT_ANSWERED}: replace the `...` with your {what}.")


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "your code") -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread only: elsewhere it just runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(
            f"{what} was still running after {seconds:g} s and was stopped: "
            "look for a loop that never ends or a call that waits forever."
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@friendly
def check_choices(answer: Any, options: str, key: Iterable[str] | None = None) -> None:
    """A set of statement letters: well formed (public), and equal to `key` (hidden)."""
    require_answer(answer, "set of letters, e.g. {'A', 'B'}")
    if isinstance(answer, str) or not isinstance(answer, set | frozenset | list | tuple):
        raise CheckFailed(
            f"Give a set of letters such as {{'A', 'C'}}, not {type(answer).__name__} {answer!r}."
        )
    letters = {str(item).strip().upper() for item in answer}
    unknown = sorted(letters - set(options))
    if unknown:
        raise CheckFailed(f"Unknown letter(s) {unknown}: choose among {', '.join(options)}.")
    if key is None:
        return
    wrong = len(letters ^ set(key))
    if wrong:
        raise CheckFailed(
            f"{wrong} statement(s) classified wrongly. Hint: reread each statement and ask "
            "what would happen if it were false."
        )
