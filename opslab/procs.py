"""Real server processes for notebooks: started once, findable, and always stopped.

Every `ManagedProcess` runs in its own process group (so a stop reaches the workers it
forks), logs to a file of its own, registers itself by name (starting a second process
with the same name stops the first: re-running a cell is safe), leaves a pidfile for
`reap_orphans()`, and on Linux asks the kernel to SIGTERM it if our process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import httpx

from opslab import pidfiles, registry

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
# PDEATHSIG fires when the *thread* that forked the child exits, not the process. A child
# started from a short-lived thread would be killed with it, so non-main threads spawn
# through this one long-lived thread instead.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opslab-spawn")


class ProcessError(RuntimeError):
    """A managed process exited early or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _preexec(parent_pid: int) -> Callable[[], None] | None:
    """The child-side hook: die with SIGTERM when the parent dies (Linux only)."""
    if _PRCTL is None:
        return None
    prctl, sigterm = _PRCTL, int(signal.SIGTERM)

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), sigterm)

    return hook


class ManagedProcess:
    """A command run in its own process group, with captured output and a guaranteed stop."""

    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cmd = [os.fspath(part) for part in cmd]
        self.name = name or Path(self.cmd[0]).name
        self.env = dict(env or {})
        safe = "".join(c if c.isalnum() else "-" for c in self.name)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{pidfiles.WORKDIR_PREFIX}{safe}-"))
        registry.track_temp_dir(self.workdir)
        self.cwd = Path(cwd) if cwd is not None else self.workdir
        self.log_path = self.workdir / "output.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfile: Path | None = None
        self._token = uuid.uuid4().hex

    def __repr__(self) -> str:
        if self._popen is None:
            state = "not started"
        else:
            code = self.returncode
            state = "running" if code is None else f"exited with {code}"
        return f"<{type(self).__name__} {self.name!r} pid={self.pid} {state}>"

    def __enter__(self) -> Self:
        return self if self._popen is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The leader's pid (also the process group id), None before start."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), None while running."""
        if self._popen is None or self._popen.returncode is not None:
            return None if self._popen is None else self._popen.returncode
        try:  # WNOWAIT: look without reaping, so the group id stays ours until stop()
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self._popen.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    @property
    def running(self) -> bool:
        """Whether the leader process is alive."""
        return self._popen is not None and self.returncode is None

    def start(self, *, timeout: float = 30.0) -> Self:
        """Start the command and wait until `ready()`; on failure stop it and raise."""
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        if self._popen is not None:  # a restart: reap the previous run first
            self.terminate()
        previous = registry.lookup(self.name)
        if previous is not None and previous is not self:
            log.info("stopping the previous %r (pid %s) first", self.name, previous.pid)
            previous.stop()
        with open(self.log_path, "ab") as log_file:
            spawn = self._spawner(log_file.fileno())
            on_main = threading.current_thread() is threading.main_thread()
            self._popen = spawn() if on_main else _SPAWNER.submit(spawn).result()
        self._register()
        log.info("started %s (pid %d): %s", self.name, self._popen.pid, " ".join(self.cmd))
        try:
            self.ready(timeout)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        return self

    def ready(self, timeout: float) -> None:
        """Block until the process can do its job; subclasses poll their own endpoint."""

    def _spawner(self, log_fd: int) -> Callable[[], subprocess.Popen[bytes]]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env, pidfiles.TOKEN_ENV: self._token}
        parent = os.getpid()
        return lambda: subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: signals reach its workers too
            preexec_fn=_preexec(parent),  # only prctl and getppid run in the child
        )

    def _register(self) -> None:
        assert self._popen is not None
        record = pidfiles.ProcRecord(
            name=self.name,
            pid=self._popen.pid,
            pgid=self._popen.pid,
            start_time=pidfiles.start_time(self._popen.pid),
            owner_pid=os.getpid(),
            owner_start_time=pidfiles.start_time(os.getpid()),
            token=self._token,
            cmd=self.cmd,
            workdir=str(self.workdir),
        )
        self._pidfile = pidfiles.write_pidfile(record)
        registry.register(self)

    def _forget(self) -> None:
        if self._pidfile is not None:
            self._pidfile.unlink(missing_ok=True)
        registry.unregister(self)

    def log_text(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the output."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _failure(self, message: str) -> ProcessError:
        return ProcessError(f"{message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit by itself; its exit code, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.returncode) is None and self._popen is not None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return code

    def wait_http(
        self, url: str, *, timeout: float = 15.0, expect_status: int | Collection[int] = 200
    ) -> httpx.Response:
        """Poll `url` until it answers with an expected status; raise with the log tail if not."""
        expected = {expect_status} if isinstance(expect_status, int) else set(expect_status)
        deadline, last = time.monotonic() + timeout, "no answer"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if (code := self.returncode) is not None or self._popen is None:
                    raise self._failure(f"{self.name} exited with {code} before {url} answered")
                try:
                    response = client.get(url)
                    if response.status_code in expected:
                        return response
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    last = f"{type(error).__name__}: {error}"
                if time.monotonic() >= deadline:
                    raise self._failure(
                        f"{self.name} did not answer {url} with {sorted(expected)} "
                        f"within {timeout:g}s (last: {last})"
                    )
                time.sleep(0.1)

    def wait_port(self, port: int, *, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
        """Wait until the process accepts TCP connections on host:port."""
        deadline = time.monotonic() + timeout
        while True:
            if (code := self.returncode) is not None or self._popen is None:
                raise self._failure(f"{self.name} exited with {code} before {host}:{port} opened")
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
                return
            if time.monotonic() >= deadline:
                raise self._failure(f"{self.name} did not open {host}:{port} within {timeout:g}s")
            time.sleep(0.05)

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send `sig` to the leader, or to its whole process group."""
        if self._popen is None or self.returncode is not None:
            raise ProcessError(f"{self.name} is not running")
        (os.killpg if group else os.kill)(self._popen.pid, sig)

    def _group_alive(self) -> bool:
        assert self._popen is not None
        if pidfiles.PROC.is_dir():  # live members, the unreaped leader is a zombie
            return bool(pidfiles.group_members(self._popen.pid))
        return self.returncode is None

    def _wait_group(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._group_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _signal_group(self, sig: int) -> None:
        assert self._popen is not None
        # Safe while the leader is unreaped: its pid cannot be reused as another group's id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the whole group, SIGKILL it after `timeout`; returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            if self._group_alive():
                self._signal_group(sig)
            if not self._wait_group(timeout):
                log.warning(
                    "%s ignored %s for %gs: sending SIGKILL",
                    self.name,
                    signal.Signals(sig).name,
                    timeout,
                )
                self._signal_group(signal.SIGKILL)
                self._wait_group(5.0)
            self._popen.wait()
        self._forget()
        return self._popen.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop gracefully with this kind of process's stop signal (then escalate)."""
        return self.terminate(self.stop_signal, timeout)

    def kill(self) -> int | None:
        """SIGKILL the whole group at once."""
        return self.terminate(signal.SIGKILL, timeout=5.0)
