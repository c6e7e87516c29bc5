"""Grading that learner code cannot fool or harm: a sandboxed kernel, a trusted judge.

`grade_class` (the instructor's command) starts one judge per submission
(`opslab.sandbox.judge`); the judge runs the notebook's cells in a confined kernel
(`opslab.sandbox.kernel`, walls in `opslab.sandbox.confine`) and decides every score itself,
from data (`opslab.sandbox.wire`) and proxies (`opslab.sandbox.remote`).
"""

from __future__ import annotations

from opslab.sandbox.confine import Confinement, Limits, sweep, uid_slot, unavailable, wrap
from opslab.sandbox.remote import host_network, learner_side

__all__ = [
    "Confinement",
    "Limits",
    "host_network",
    "learner_side",
    "sweep",
    "uid_slot",
    "unavailable",
    "wrap",
]
