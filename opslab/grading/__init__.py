"""Checks for the review questions (`solutions/`, `exercises/`): honest, bounded, friendly.

Each `check_*` function returns None when the answer passes, and a `Failed` whose repr is a
plain message with a hint when it does not: otter's doctest then shows "Expected nothing /
Got: ✗ <message>" instead of a traceback. Learner code runs under a time limit; servers run
as subprocesses that are always killed. An unanswered question (`...`) is reported as "not
answered yet", never as a crash.
"""

from __future__ import annotations

from opslab.grading.common import (
    CheckFailed,
    Failed,
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
from opslab.grading.dockerfile_build import check_dockerfile_runs
from opslab.grading.shutdown import check_graceful, check_idle_exit

__all__ = [
    "RULES",
    "CheckFailed",
    "Failed",
    "Stage",
    "TimeLimitExceeded",
    "check_choices",
    "check_dockerfile",
    "check_dockerfile_runs",
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
