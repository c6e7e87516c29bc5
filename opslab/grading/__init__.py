"""Checks for the review questions (`solutions/`, `exercises/`): honest, bounded, friendly.

Each `check_*` function returns None when the answer passes and raises `CheckFailed` (an
AssertionError, which is what otter's tests report) with a plain message and a hint when it
does not. Learner code runs under a time limit; servers run as subprocesses that are always
killed. An unanswered question (`...`) is reported as "not answered yet", never as a crash.
"""

from __future__ import annotations

from opslab.grading.common import (
    CheckFailed,
    TimeLimitExceeded,
    check_choices,
    require_answer,
    time_limit,
)
from opslab.grading.config_checks import (
    check_loads,
    check_loads_from_process_env,
    check_refuses,
    check_repr_hides,
)
from opslab.grading.dockerfile import RULES, Stage, check_dockerfile, parse_dockerfile
from opslab.grading.shutdown import check_graceful, check_idle_exit

__all__ = [
    "RULES",
    "CheckFailed",
    "Stage",
    "TimeLimitExceeded",
    "check_choices",
    "check_dockerfile",
    "check_graceful",
    "check_idle_exit",
    "check_loads",
    "check_loads_from_process_env",
    "check_refuses",
    "check_repr_hides",
    "parse_dockerfile",
    "require_answer",
    "time_limit",
]
