"""wrk, a keep-alive load generator that never retries, with a mix of GETs and POSTs.

A browser or `opslab.run_load(retry_closed=True)` resends a GET that a server closed
under it, which hides lost requests; wrk counts every one: a connection closed before
its answer is a socket read error, and a 4xx/5xx answer is a "status" error.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Every `post_every`-th request creates a todo; the others read a page. `done` prints
# wrk's own counters as one JSON line, so nothing is parsed out of its prose.
SCRIPT = """\
local n = 0
request = function()
  n = n + 1
  if n % {post_every} == 0 then
    return wrk.format("POST", "/api/todos", {{["Content-Type"] = "application/json"}},
                      '{{"title": "wrk ' .. n .. '"}}')
  end
  return wrk.format("GET", "{get_path}")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
    '"status": %d, "p99_ms": %.3f}}\\n',
    summary.requests, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """wrk's counters for one run."""

    requests: int
    connect: int
    read: int
    write: int
    timeout: int
    status: int  # answers that were not 2xx/3xx
    p99_ms: float

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def failed(self) -> int:
        """Requests a client that does not retry saw fail."""
        return self.socket_errors + self.status


def start_wrk(
    url: str,
    *,
    seconds: float,
    threads: int = 2,
    connections: int = 16,
    post_every: int = 4,
    get_path: str = "/",
) -> subprocess.Popen[str]:
    """Start wrk against `url` (loopback) for `seconds`; finish it with `wrk_result`."""
    if not url.startswith(("http://127.0.0.1", "https://127.0.0.1", "https://localhost")):
        raise ValueError(f"wrk is only pointed at this machine: {url}")
    script = Path(tempfile.mkstemp(prefix="opslab-wrk-", suffix=".lua")[1])
    script.write_text(SCRIPT.format(post_every=post_every, get_path=get_path))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", "-s", str(script), url]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.script = script  # type: ignore[attr-defined]
    return proc


def wrk_result(
    proc: subprocess.Popen[str], *, stop: bool = False, timeout: float = 60
) -> WrkResult:
    """Wait for wrk (`stop`: end it now, as ^C does) and read its counters."""
    if stop and proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # wrk stops its threads and prints its summary
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    finally:
        Path(proc.script).unlink(missing_ok=True)  # type: ignore[attr-defined]
    line = next((x for x in output.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    return WrkResult(**json.loads(line))
