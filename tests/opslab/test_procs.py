"""ManagedProcess with real processes: start, readiness, logs, stop, process groups, PDEATHSIG."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from opslab import registry
from opslab.pidfiles import pid_running, reap_orphans
from opslab.procs import ManagedProcess, ProcessError, free_port

PY = sys.executable


def _http_server(name: str) -> tuple[ManagedProcess, int]:
    port = free_port()
    cmd = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return ManagedProcess(cmd, name=name), port


def _port_is_free(port: int) -> bool:
    """Nothing accepts on the port, and a new server (SO_REUSEADDR, as servers do) can bind it."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_free_port_returns_bindable_port() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert _port_is_free(port)


def test_stop_all_stops_server_and_frees_its_port() -> None:
    proc, port = _http_server("t-stop-all")
    proc.start()
    assert proc.wait_http(f"http://127.0.0.1:{port}/").status_code == 200
    assert proc in registry.running_processes()

    registry.stop_all()

    assert not proc.running
    assert proc not in registry.running_processes()
    assert _port_is_free(port)


def test_terminate_also_kills_processes_the_command_started(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {child_file}; wait"
    with ManagedProcess(["sh", "-c", script], name="t-group") as proc:
        assert _wait_until(lambda: child_file.is_file() and child_file.read_text().strip())
        child = int(child_file.read_text())
        assert pid_running(child)
        proc.terminate(timeout=5)
    assert _wait_until(lambda: not pid_running(child))


def test_terminate_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(300)"
    )
    proc = ManagedProcess([PY, "-c", code], name="t-stubborn").start()
    assert _wait_until(lambda: "up" in proc.log_text())
    started = time.monotonic()

    assert proc.terminate(timeout=0.5) == -signal.SIGKILL

    assert time.monotonic() - started < 5
    assert not proc.running


def test_wait_http_error_includes_log_tail_when_process_exits_early() -> None:
    code = "import sys; print('config is broken: marker-42'); sys.exit(3)"
    proc = ManagedProcess([PY, "-c", code], name="t-early-exit").start()

    with pytest.raises(ProcessError, match="exited with 3") as raised:
        proc.wait_http(f"http://127.0.0.1:{free_port()}/", timeout=10)

    assert "marker-42" in str(raised.value)
    proc.stop()


def test_wait_http_times_out_with_clear_error() -> None:
    code = "import time; print('still booting', flush=True); time.sleep(300)"
    with ManagedProcess([PY, "-c", code], name="t-slow-boot") as proc:
        with pytest.raises(ProcessError, match="did not answer") as raised:
            proc.wait_http(f"http://127.0.0.1:{free_port()}/", timeout=0.5)
        assert "ConnectError" in str(raised.value)


def test_log_text_captures_stdout_and_stderr() -> None:
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    proc = ManagedProcess([PY, "-c", code], name="t-logs").start()

    assert proc.wait(timeout=10) == 0
    assert "to stdout" in proc.log_text()
    assert "to stderr" in proc.log_text()
    assert proc.log_tail(1) in {"to stdout", "to stderr"}
    proc.stop()


def test_start_with_same_name_stops_previous_instance() -> None:
    first, first_port = _http_server("t-same-name")
    second, _ = _http_server("t-same-name")
    first.start()
    first.wait_http(f"http://127.0.0.1:{first_port}/")

    second.start()
    try:
        assert not first.running
        assert _port_is_free(first_port)
        assert registry.lookup("t-same-name") is second
    finally:
        second.stop()


def test_stopped_process_can_be_started_again() -> None:
    proc, port = _http_server("t-restart")
    proc.start()
    first_pid = proc.pid
    proc.stop()

    proc.start()
    try:
        assert proc.pid != first_pid
        assert proc.wait_http(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.stop()


def test_context_manager_stops_process_on_exit() -> None:
    with ManagedProcess([PY, "-c", "import time; time.sleep(300)"], name="t-with") as proc:
        pid = proc.pid
        assert proc.running
    assert not proc.running
    assert proc.returncode == -signal.SIGTERM
    assert pid is not None
    assert not pid_running(pid)


def test_send_signal_reaches_the_process() -> None:
    proc = ManagedProcess(["sleep", "300"], name="t-signal").start()

    proc.send_signal(signal.SIGINT)

    assert proc.wait(timeout=5) == -signal.SIGINT
    proc.stop()
    with pytest.raises(ProcessError, match="not running"):
        proc.send_signal(signal.SIGTERM)


def test_process_started_from_short_lived_thread_outlives_the_thread() -> None:
    # PDEATHSIG fires when the forking *thread* exits: spawning must not use that thread.
    proc = ManagedProcess(["sleep", "300"], name="t-thread")
    thread = threading.Thread(target=proc.start)
    thread.start()
    thread.join()
    time.sleep(0.3)
    try:
        assert proc.running
    finally:
        proc.stop()


PARENT = """
import sys, time
from opslab.procs import ManagedProcess
child = ManagedProcess([sys.executable, "-c", "import time; time.sleep(300)"], name="c").start()
print(child.pid, flush=True)
time.sleep(300)
"""


def test_child_dies_when_parent_is_sigkilled() -> None:
    child = 0
    with subprocess.Popen([PY, "-c", PARENT], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert pid_running(child)

            parent.kill()  # no atexit handlers run: only the kernel's PDEATHSIG can help
            parent.wait()

            assert _wait_until(lambda: not pid_running(child))
        finally:
            parent.kill()
            if child and pid_running(child):
                os.killpg(child, signal.SIGKILL)
    assert reap_orphans() == []  # nothing left to stop; drops the dead parent's pidfile
