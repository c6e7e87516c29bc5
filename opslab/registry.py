"""Every process this kernel started, by name: at interpreter exit all stop, their files go."""

from __future__ import annotations

import atexit
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from opslab import pidfiles

if TYPE_CHECKING:
    from opslab.procs import ManagedProcess

log = logging.getLogger(__name__)

_REGISTRY: dict[str, ManagedProcess] = {}
_LOCK = threading.RLock()
_TEMP_DIRS: list[Path] = []


def lookup(name: str) -> ManagedProcess | None:
    """The registered process called `name`, if any."""
    with _LOCK:
        return _REGISTRY.get(name)


def register(proc: ManagedProcess) -> None:
    """Remember a started process under its name."""
    with _LOCK:
        _REGISTRY[proc.name] = proc


def unregister(proc: ManagedProcess) -> None:
    """Forget a stopped process (only if it is still the one registered under its name)."""
    with _LOCK:
        if _REGISTRY.get(proc.name) is proc:
            del _REGISTRY[proc.name]


def running_processes() -> list[ManagedProcess]:
    """The registered processes, oldest first."""
    with _LOCK:
        return list(_REGISTRY.values())


def stop_all(timeout: float = 10.0) -> None:
    """Stop every process this kernel started (also runs at interpreter exit)."""
    for proc in reversed(running_processes()):
        try:
            proc.stop(timeout=timeout)
        except Exception:
            log.exception("could not stop %s", proc.name)


def track_temp_dir(path: Path) -> None:
    """Remove `path` at interpreter exit (logs stay readable after a stop until then); if
    this process is killed first, the next `reap_orphans()` removes it (`pidfiles.mark_owner`)."""
    pidfiles.mark_owner(path)
    with _LOCK:
        _TEMP_DIRS.append(path)


def _at_exit() -> None:
    stop_all()
    with _LOCK:
        for path in _TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        _TEMP_DIRS.clear()


atexit.register(_at_exit)
