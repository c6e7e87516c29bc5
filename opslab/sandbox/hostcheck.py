"""Run one host-network check (`@remote.host_network`) on data: JSON in on stdin, JSON out.

The judge starts this in the host's network namespace for checks that drive the container
engine (building and running a learner's Dockerfile). It receives the answer as data and
never anything of the learner's kernel; the engine runs the Dockerfile's steps in containers.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from opslab.sandbox import remote, wire
from opslab.sandbox.kernel import describe

MAX_INPUT = 16 << 20


def main() -> int:
    """Call the named check with the decoded arguments; print its verdict as one JSON line."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    payload = json.loads(sys.stdin.read(MAX_INPUT))
    module_name, _, _ = str(payload["fn"]).partition(":")
    importlib.import_module(module_name)
    function = remote.HOST_NETWORK[payload["fn"]]
    args, kwargs = wire.decode(payload["args"]), wire.decode(payload["kwargs"])
    try:
        result = function(*args, **kwargs)
        reply = {"failed": result.message} if result is not None else {"ok": True}
    except Exception as exc:
        reply = {"raised": describe(exc)}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
