"""The judge's connection to a learner kernel: bounded requests, deadlines, kill and restart.

Replies are read by a thread into a queue, one line of at most `MAX_REPLY` bytes each; a reply
that is late (its deadline is the sandbox's own time limit plus a grace) or too large costs the
kernel its life: it is killed with everything it started, and `Sandbox.revive()` starts a new
one and replays the cells that had finished. Whatever interrupts the judge while it waits (its
own time limit) kills the kernel too: a half-answered request is never reused.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import secrets
import subprocess
import threading
import time
from typing import Any

from opslab.sandbox import confine, remote, wire

log = logging.getLogger(__name__)

MAX_REPLY = 8 << 20
LOG_TAIL = 16 << 10
GRACE = 5.0  # beyond the kernel's own limit, before the judge gives up on it
CALL_SECONDS = 30.0


class KernelLost(RuntimeError):  # noqa: N818 - reads as what happened
    """The kernel did not answer in time (or broke the protocol) and was killed."""


class Sandbox:
    """One learner kernel, confined; the `remote.Channel` the judge's proxies talk through."""

    def __init__(self, confinement: confine.Confinement) -> None:
        self.confinement = confinement
        self.proc: subprocess.Popen[bytes] | None = None
        self.replies: queue.Queue[bytes | None] = queue.Queue()
        self.output: collections.deque[bytes] = collections.deque()
        self.output_bytes = 0
        self.starts = 0

    # ------------------------------------------------------------------ process
    def start(self) -> None:
        self.proc = subprocess.Popen(
            confine.kernel_command(self.confinement),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.starts += 1
        self.replies = queue.Queue()
        threading.Thread(target=self._read_replies, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._read_output, args=(self.proc,), daemon=True).start()

    def _read_replies(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        while line := proc.stdout.readline(MAX_REPLY + 1):
            self.replies.put(line)
        self.replies.put(None)

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        """Keep the last LOG_TAIL bytes of what the learner's code printed; count the rest."""
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(1 << 16):
            self.output.append(chunk)
            self.output_bytes += len(chunk)
            while sum(map(len, self.output)) > LOG_TAIL and len(self.output) > 1:
                self.output.popleft()

    def output_tail(self) -> str:
        return b"".join(self.output)[-LOG_TAIL:].decode(errors="replace")

    def kill(self) -> None:
        """The kernel and everything of the submission's uid: gone."""
        if self.proc is not None:
            confine.killpg(self.proc.pid)
            confine.sweep(self.confinement.uid)  # the kernel's user; servers are swept at the end
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ protocol
    def request(self, message: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Send one request; its reply, or KernelLost (and a dead kernel) after seconds+GRACE.

        Each request carries a fresh random id that its reply must echo: lines the learner's
        code wrote to the protocol descriptor earlier cannot pass for a reply.
        """
        if not self.alive:
            raise KernelLost("the notebook's kernel is not running")
        assert self.proc is not None
        assert self.proc.stdin is not None
        ident = secrets.token_hex(16)
        deadline = time.monotonic() + seconds + GRACE
        try:
            self.proc.stdin.write(json.dumps({**message, "id": ident}).encode() + b"\n")
            self.proc.stdin.flush()
            while True:
                reply = self._reply(deadline)
                if reply.get("id") == ident:
                    break
        except BaseException:  # too late, too large, broken, or the judge's own time limit
            self.kill()
            raise
        if "internal" in reply:
            log.warning("sandbox kernel error: %s", reply.get("trace", reply["internal"]))
        return reply

    def _reply(self, deadline: float) -> dict[str, Any]:
        try:
            line = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise KernelLost("no answer in time: stopped") from None
        if line is None or len(line) > MAX_REPLY:
            raise KernelLost("the kernel exited" if line is None else "its answer was too large")
        try:
            reply = json.loads(line)
        except ValueError:
            return {}
        return reply if isinstance(reply, dict) else {}

    def run_cell(self, source: str, seconds: float) -> dict[str, Any]:
        return self.request({"op": "cell", "source": source, "timeout": seconds}, seconds)

    def get(self, name: str) -> Any:
        """The learner's value for `name`: data, or a proxy; NameError when it is not defined."""
        reply = self.request({"op": "get", "name": name}, CALL_SECONDS)
        if reply.get("missing"):
            raise NameError(f"name {name!r} is not defined")
        return self._result(reply)

    # ------------------------------------------------------------------ remote.Channel
    def call(self, handle: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        message = {"op": "call", "h": handle, **self._arguments(args, kwargs)}
        return self._result(self.request({**message, "timeout": CALL_SECONDS}, CALL_SECONDS))

    def probe(self, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        message = {"op": "probe", "fn": fn, **self._arguments(args, kwargs)}
        return self._result(self.request({**message, "timeout": CALL_SECONDS}, CALL_SECONDS))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        def handle(value: Any) -> int:
            if isinstance(value, remote.Remote):
                return value.remote_id
            raise wire.WireError(f"a {type(value).__name__} cannot be sent to the sandbox")

        return {"args": wire.encode(list(args), handle), "kwargs": wire.encode(kwargs, handle)}

    def _proxy(self, data: dict[str, Any]) -> remote.Remote:
        attrs = {}
        for name, value in dict(data.get("attrs") or {}).items():
            try:
                attrs[str(name)] = wire.decode(value)
            except wire.WireError:
                continue
        kind = remote.RemoteCallable if data.get("kind") in ("callable", "class") else remote.Remote
        return kind(self, data, attrs)

    def _result(self, reply: dict[str, Any]) -> Any:
        from opslab.grading.common import TimeLimitExceeded

        if "value" in reply:
            return wire.decode(reply["value"], self._proxy)
        if "raised" in reply:
            raise remote.rebuild(dict(reply["raised"]))
        if "stopped" in reply:
            raise TimeLimitExceeded(
                f"your code was still running after {CALL_SECONDS:g} s and was stopped: look "
                "for a loop that never ends or a call that waits forever."
            )
        raise KernelLost(str(reply.get("internal", "the kernel gave no answer")))
