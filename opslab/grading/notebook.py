"""The learner's `grader`: otter's notebook checks, reported honestly in one verdict line.

otter prints "All test cases passed!" even when the only public check looked at the answer's
format, and wraps every failure in ten lines of doctest output. `Notebook.check` runs the
same public checks and says, on its first line, what they showed: a real pass (and how many
points stay hidden), a well-formed answer that is only scored at grading, or what failed and
why. The exercises' setup cell creates this `grader` (`opslab.grade_class` writes it).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import otter

FAILED = re.compile(r"^\s*✗ (.*)$", re.M)


class Verdict:
    """The result of `grader.check(...)`: its repr is the verdict, then the details."""

    def __init__(self, question: str, results: Any) -> None:
        self.question, self.results = question, results
        self.cases = [r for r in results.test_case_results if not r.test_case.hidden]

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def lines(self) -> list[str]:
        if not self.passed:
            failed = next(case for case in self.cases if not case.passed)
            return [f"{self.question}: ✗ {_reason(failed.message or '')}"] + (
                [f"  {failed.test_case.failure_message}"]
                if failed.test_case.failure_message
                else []
            )
        scored = sum(case.test_case.points or 0 for case in self.cases)
        messages = [c.test_case.success_message for c in self.cases if c.test_case.success_message]
        if not scored:
            head = f"{self.question}: answer well-formed; not scored until your notebook is graded"
        else:
            unit = "point" if scored == 1 else "points"
            head = f"{self.question}: ✓ the public check passed ({scored:g} {unit})"
        return [head] + [f"  {m}" for m in messages]

    def __repr__(self) -> str:
        return "\n".join(self.lines())


def _reason(output: str) -> str:
    """The check's own message out of doctest's report (or the error's last line)."""
    found = FAILED.search(output)
    if found:
        return found.group(1).strip()
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the check failed"


class Notebook(otter.Notebook):
    """otter's Notebook whose `check` returns a `Verdict` (the same checks, honest words)."""

    def check(self, question: str, global_env: dict[str, Any] | None = None) -> Verdict:  # type: ignore[override]
        if global_env is None:
            frame = inspect.currentframe()
            global_env = frame.f_back.f_globals if frame and frame.f_back else {}
        return Verdict(question, super().check(question, global_env))
