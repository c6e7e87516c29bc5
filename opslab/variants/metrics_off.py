"""The app with no metrics middleware at all: the baseline for measuring its cost.

(The same as METRICS_ENABLED=false; kept as a variant so overhead comparisons can run
both sides through the same launcher.)
"""

from __future__ import annotations

import os


def apply() -> None:
    """Turn metrics off through the app's own setting."""
    os.environ["METRICS_ENABLED"] = "false"
