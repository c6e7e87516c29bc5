"""The learner's side of grading: runs a submission's cells and answers questions about them.

Started by the judge inside the sandbox (`python -m opslab.sandbox.kernel`), as an
unprivileged user that exists for this submission only. It reads one JSON request per line
on stdin and writes one JSON reply per line to its protocol descriptor; everything the
learner's code prints goes to stderr, which the judge reads with a bound. Nothing it sends
is trusted: the judge decides every score from these replies as data.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from opslab.sandbox import remote, wire

MAX_REQUEST = 4 << 20


class Stopped(BaseException):
    """A cell or call ran out of time (a BaseException: `except Exception` misses it)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` with Stopped; the judge kills us if that fails too."""

    def expire(signum: int, frame: object) -> None:
        raise Stopped(f"stopped after {seconds:g} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def describe(exc: BaseException) -> dict[str, Any]:
    """An exception as data: its class name, the builtin classes it derives from, its message."""
    bases = [k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins"]
    if remote.is_course_error(exc):
        bases.insert(0, type(exc).__name__)
    message = wire.safe_text(lambda: str(exc), "message")[:4000]
    return {"type": wire.safe_text(lambda: type(exc).__name__, "name")[:200], "bases": bases,
            "message": message}  # fmt: skip


class Kernel:
    """The namespace the cells run in, and the objects handed out to the judge by number."""

    def __init__(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        self.shell.user_ns["grader"] = _NoGrader()
        self.handles: dict[int, Any] = {}

    def handle(self, value: Any) -> int:
        key = id(value)
        self.handles[key] = value
        return key

    def value(self, result: Any) -> dict[str, Any]:
        return {"value": wire.encode(result, self.handle)}

    def run_cell(self, request: dict[str, Any]) -> dict[str, Any]:
        with deadline(float(request["timeout"])):
            result = self.shell.run_cell(str(request["source"]), store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return {"status": "ok"}
        if isinstance(error, Stopped):  # IPython catches it (it catches everything) and reports
            return {"stopped": str(error)}
        return {"status": "error", "error": describe(error)}

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request["name"])
        if name not in self.shell.user_ns:
            return {"missing": True}
        return self.value(self.shell.user_ns[name])

    def _args(self, request: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        args = wire.decode(request.get("args", {"t": "list", "v": []}), self._resolve)
        kwargs = wire.decode(request.get("kwargs", {"t": "dict", "v": []}), self._resolve)
        return list(args), dict(kwargs)

    def _resolve(self, data: dict[str, Any]) -> Any:
        return self.handles[int(data["id"])]

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self.handles[int(request["h"])]
        args, kwargs = self._args(request)
        return self._guarded(lambda: target(*args, **kwargs), float(request["timeout"]))

    def probe(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run a course function registered as learner-side on a learner object."""
        module_name, _, qualname = str(request["fn"]).partition(":")
        importlib.import_module(module_name)
        function = remote.LEARNER_SIDE[f"{module_name}:{qualname}"]
        args, kwargs = self._args(request)
        return self._guarded(lambda: function(*args, **kwargs), float(request["timeout"]))

    def _guarded(self, work: Callable[[], Any], seconds: float) -> dict[str, Any]:
        try:
            with deadline(seconds):
                result = work()
        except Stopped as exc:
            return {"stopped": str(exc)}
        except Exception as exc:
            return {"raised": describe(exc)}
        return self.value(result)


class _NoGrader:
    """Stands in for otter's `grader` while grading: the public checks are not the score."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def serve(requests: Any, replies: Any) -> None:
    """Answer requests until stdin closes; a broken request gets an error reply, not a crash."""
    kernel = Kernel()
    handlers = {"cell": kernel.run_cell, "get": kernel.get, "call": kernel.call,
                "probe": kernel.probe}  # fmt: skip
    while line := requests.readline(MAX_REQUEST):
        request: Any = None
        try:
            request = json.loads(line)
            reply = handlers[request["op"]](request)
        except Stopped as exc:
            reply = {"stopped": str(exc)}
        except Exception as exc:  # a bug here must not look like a learner's failure
            reply = {"internal": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        if isinstance(request, dict) and "id" in request:
            reply["id"] = request["id"]
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"internal": f"reply not serialisable: {exc}"})
        replies.write(text + "\n")
        replies.flush()


def main() -> None:
    """Keep the protocol on private descriptors; the learner's prints go to stderr."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stdin = os.fdopen(0, "r")
    serve(requests, replies)


if __name__ == "__main__":
    main()
