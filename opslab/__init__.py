"""Ops Lab's notebook toolkit: real servers on loopback, load, metrics and capability checks.

Every notebook opens with `opslab.setup()`. Servers started here (the sample app, nginx,
Prometheus) are real processes that are always stopped: at kernel exit, when a cell that
starts one is re-run, or by the next kernel if this one is killed.
"""

from __future__ import annotations

import logging
import platform
import sys
from dataclasses import dataclass

from opslab.app import AppServer, start_app
from opslab.caps import (
    Capability,
    MissingCapability,
    Requirement,
    check,
    needs,
    report,
    require,
    strict_mode,
)
from opslab.load import LoadRunner, check_loopback, run_load
from opslab.loadresult import LoadResult, RequestRecord
from opslab.nginx import Nginx, NginxConfigError, brotli_module_path, nginx_version, render
from opslab.pidfiles import private_dir, reap_orphans, state_dir
from opslab.procs import ManagedProcess, ProcessError, free_port
from opslab.prometheus import Prometheus, PrometheusError
from opslab.registry import running_processes, stop_all
from opslab.show import Code, show_file, show_source

__all__ = [
    "AppServer",
    "Capability",
    "Code",
    "LoadResult",
    "LoadRunner",
    "ManagedProcess",
    "MissingCapability",
    "Nginx",
    "NginxConfigError",
    "ProcessError",
    "Prometheus",
    "PrometheusError",
    "RequestRecord",
    "Requirement",
    "SetupInfo",
    "brotli_module_path",
    "check",
    "check_loopback",
    "free_port",
    "needs",
    "nginx_version",
    "private_dir",
    "reap_orphans",
    "render",
    "report",
    "require",
    "run_load",
    "running_processes",
    "setup",
    "show_file",
    "show_source",
    "start_app",
    "state_dir",
    "stop_all",
    "strict_mode",
]

log = logging.getLogger(__name__)
NOISY_LOGGERS = ("httpx", "httpcore", "matplotlib", "asyncio", "docker", "urllib3")


@dataclass(frozen=True)
class SetupInfo:
    """What `setup()` did; shown as one line in the notebook."""

    python: str
    strict: bool
    orphans_reaped: int

    def __repr__(self) -> str:
        strict = "on: missing tools fail" if self.strict else "off: missing tools skip their cells"
        return (
            f"opslab ready: Python {self.python}, strict mode {strict}, "
            f"{self.orphans_reaped} orphaned server(s) stopped"
        )


def _configure_logging(verbose: bool) -> None:
    """Warnings from opslab reach the notebook; library chatter (httpx per request) does not.

    They go to stdout: in a notebook they narrate what a cell demonstrates (a server that
    ignored SIGTERM being killed), and stderr stays for real errors, which the book's
    browser test treats as a failed page.
    """
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    ours = logging.getLogger("opslab")
    ours.setLevel(logging.INFO if verbose else logging.WARNING)
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("opslab: %(message)s"))
        ours.addHandler(handler)
        ours.propagate = False


def _configure_matplotlib() -> None:
    """Readable default figures, if matplotlib is installed."""
    try:
        import matplotlib as mpl
    except ImportError:
        return
    mpl.rcParams.update(
        {"figure.figsize": (9, 4), "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3}
    )


def setup(*, verbose: bool = False) -> SetupInfo:
    """Open a notebook: stop servers a killed kernel left behind, quiet logs, plot defaults."""
    _configure_logging(verbose)
    _configure_matplotlib()
    reaped = reap_orphans()
    return SetupInfo(platform.python_version(), strict_mode(), len(reaped))
