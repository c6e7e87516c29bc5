"""Fixtures for the toolkit's tests: private pidfiles, leak checks, real servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import cycle
from pathlib import Path

import pytest

from opslab import registry
from opslab.caps import check, strict_mode
from opslab.pidfiles import TOKEN_ENV


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pidfiles go to the test's own directory: reaping never sees a real session's."""
    path = tmp_path / "state"
    monkeypatch.setenv("OPSLAB_STATE_DIR", str(path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return path


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a process running (and stop it, so others are unaffected)."""
    before = set(map(id, registry.running_processes()))
    yield
    leaked = [p for p in registry.running_processes() if id(p) not in before and p.running]
    for proc in leaked:
        proc.kill()
    assert not leaked, f"processes left running: {leaked}"


def _require_tool(name: str) -> None:
    capability = check(name)
    if capability.available:
        return
    if strict_mode():
        pytest.fail(f"{name} is missing and OPSLAB_STRICT is set:\n{capability.install_hint}")
    pytest.skip(f"{name} is not installed")


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], None]:
    """Skip when a tool is missing, except in strict mode (OPSLAB_STRICT=1), where it fails."""
    return _require_tool


class _Handler(BaseHTTPRequestHandler):
    """/cycle answers 200, 404, 500 in turn; /ok always 200; every answer carries X-Instance."""

    statuses = cycle([200, 404, 500])
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path.startswith("/cycle"):
            with self.lock:
                status = next(self.statuses)
        else:
            status = 200 if self.path.startswith("/ok") else 404
        body = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Instance", "in-process")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: no access log on stderr."""


@pytest.fixture
def http_server() -> Iterator[str]:
    """A small in-process HTTP server on a free loopback port; yields its base URL."""
    _Handler.statuses = cycle([200, 404, 500])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
