"""Checks for checkpoint 07: the order of the steps of a blue-green deploy.

The learner answers with a list of the step names in `STEPS`, in the order a deploy runs
them. The public check: every step exactly once. Each hidden check is one ordering rule
that a safe deploy keeps (`RULES`); any order that keeps them all scores full marks.
"""

from __future__ import annotations

from typing import Any

from opslab.grading.common import CheckFailed, friendly, require_answer

# In alphabetical order: putting them in a safe order is the exercise.
STEPS = (
    "check green /version",
    "confirm traffic reaches green",
    "nginx -t",
    "nginx reload",
    "render nginx config for green",
    "start green",
    "stop blue",
    "wait for green /ready",
)

# rule name -> (steps that must come first, steps that must come after, why)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "green-ready-before-switch": (
        ("start green", "wait for green /ready"),
        ("nginx reload",),
        "nginx may send traffic to green only once green answers /ready; start it, then wait",
    ),
    "version-before-switch": (
        ("wait for green /ready", "check green /version"),
        ("nginx reload",),
        "once green is ready, check that it runs the release you meant, before any user reaches it",
    ),
    "test-before-reload": (
        ("render nginx config for green", "nginx -t"),
        ("nginx reload",),
        "render the new config, then `nginx -t` it: a reload with a broken config fails "
        "(and a restart with one takes the site down)",
    ),
    "confirm-before-stop": (
        ("nginx reload", "confirm traffic reaches green"),
        ("stop blue",),
        "blue is the rollback: stop it only after requests through nginx show green answering",
    ),
}


def _order(answer: Any) -> list[str]:
    require_answer(answer, "list of step names")
    if isinstance(answer, str) or not isinstance(answer, list | tuple):
        raise CheckFailed(f"Give a list of step names, not {type(answer).__name__}.")
    steps = [str(step).strip() for step in answer]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise CheckFailed(f"Unknown step {unknown[0]!r}: use the names in STEPS exactly.")
    missing = [s for s in STEPS if s not in steps]
    twice = sorted({s for s in steps if steps.count(s) > 1})
    if missing or twice:
        raise CheckFailed(
            f"Every step exactly once: missing {missing}, repeated {twice}. "
            "Hint: start from `list(STEPS)` and reorder it."
        )
    return steps


@friendly
def check_steps(answer: Any, rule: str | None = None) -> None:
    """Every step once (rule None); else the named ordering rule holds."""
    steps = _order(answer)
    if rule is None:
        return
    before, after, why = RULES[rule]
    for first in before:
        for then in after:
            if steps.index(first) > steps.index(then):
                raise CheckFailed(f"{then!r} comes before {first!r}. Hint: {why}.")
    if len(before) == 2 and steps.index(before[0]) > steps.index(before[1]):
        raise CheckFailed(f"{before[1]!r} comes before {before[0]!r}. Hint: {why}.")
