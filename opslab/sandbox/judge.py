"""Grade one submission: `python -m opslab.sandbox.judge` reads a job (JSON) and prints results.

The judge is trusted code only. It never imports or executes the learner's code: the cells run
in a confined kernel (`opslab.sandbox.session`), each under a time limit, and the tests (from
the instructor's autograder, sent in the job) are evaluated here, with the learner's names
fetched as data or proxies. A cell stopped at its limit is skipped and the kernel replayed
without it, so only the questions that need that cell lose their points.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opslab.sandbox import confine, remote, wire
from opslab.sandbox.session import KernelLost, Sandbox

log = logging.getLogger(__name__)

CELL_SECONDS = float(os.environ.get("OPSLAB_CELL_SECONDS", "60"))
HOST_CHECK_SECONDS = 600.0  # q1b builds a Dockerfile (cold: apt and pip)
MAX_RESTARTS = 6
MAX_JOB = 64 << 20
MODULES = {"grading": "opslab.grading"}  # and opslab.grading.*_checks, by their names


@dataclass
class CellResult:
    index: int
    status: str = "not run"  # ok, error, stopped, skipped
    message: str = ""


@dataclass
class CaseResult:
    question: str
    points: float
    hidden: bool
    passed: bool = False
    message: str = ""


@dataclass
class Judge:
    """The state of one grading: the cells, what became of them, the kernel."""

    cells: list[str]
    confinement: confine.Confinement
    host_net_fd: int | None = None
    results: list[CellResult] = field(default_factory=list)
    sandbox: Sandbox | None = None
    restarts: int = 0

    # ------------------------------------------------------------------ cells
    def run_cells(self) -> None:
        self.sandbox = Sandbox(self.confinement)
        self.sandbox.start()
        self.results = [CellResult(i) for i in range(len(self.cells))]
        for cell in self.results:
            self._run(cell)

    def _run(self, cell: CellResult) -> None:
        assert self.sandbox is not None
        try:
            reply = self.sandbox.run_cell(self.cells[cell.index], CELL_SECONDS)
        except KernelLost:
            cell.status = "stopped"
            cell.message = f"cell {cell.index + 1} was stopped at its {CELL_SECONDS:g} s limit"
            self.revive(cell.index)
            return
        if "stopped" in reply:
            cell.status = "stopped"
            cell.message = f"cell {cell.index + 1} was stopped at its {CELL_SECONDS:g} s limit"
        elif reply.get("status") == "error":
            error = reply.get("error") or {}
            cell.status = "error"
            cell.message = (
                f"cell {cell.index + 1} raised {error.get('type')}: "
                + str(error.get("message", ""))[:300]
            )
        else:
            cell.status = "ok"

    def revive(self, upto: int | None = None) -> bool:
        """A new kernel with the cells that had finished (before `upto`) run again."""
        assert self.sandbox is not None
        self.sandbox.kill()
        if self.restarts >= MAX_RESTARTS:
            return False
        self.restarts += 1
        self.sandbox.start()
        for cell in self.results[: len(self.results) if upto is None else upto]:
            if cell.status not in ("ok", "error"):
                continue
            try:
                self.sandbox.run_cell(self.cells[cell.index], CELL_SECONDS)
            except KernelLost:
                cell.status, cell.message = "stopped", f"cell {cell.index + 1} hung when re-run"
                return self.revive(upto)
        return True

    # ------------------------------------------------------------------ tests
    def evaluate(self, code: str) -> tuple[bool, str]:
        """Run one test case's doctest examples here; (passed, message)."""
        for example in doctest.DocTestParser().get_examples(code):
            passed, message = self._example(example.source, example.want)
            if not passed:
                return False, message
        return True, ""

    def _example(self, source: str, want: str) -> tuple[bool, str]:
        from opslab.grading.common import CheckFailed, Failed, TimeLimitExceeded

        assert self.sandbox is not None
        if not self.sandbox.alive and not self.revive():
            return False, "not graded: the notebook's code was stopped too many times"
        try:
            tree = ast.parse(source, mode="eval")
            namespace = self._namespace(tree)
            result = self._call(tree, namespace)
        except NameError as exc:
            return False, f"not answered: {exc} (does the cell that defines it run?)"
        except (CheckFailed, TimeLimitExceeded) as exc:
            return False, str(exc)
        except KernelLost as exc:
            return False, f"your code did not answer and was stopped ({exc})"
        except wire.WireError as exc:
            return False, f"your answer could not be read: {exc}"
        except Exception as exc:
            if type(exc).__name__ == "MissingCapability" and os.environ.get("OPSLAB_STRICT"):
                raise
            return False, f"{type(exc).__name__}: {exc}"
        if isinstance(result, Failed):
            return False, result.message
        if want.strip() and repr(result) != want.strip():
            return False, f"expected {want.strip()}, got {result!r}"
        if not want.strip() and result is not None:
            return False, f"unexpected result {result!r}"
        return True, ""

    def _namespace(self, tree: ast.Expression) -> dict[str, Any]:
        """The course modules the test names, and the learner's names (from the sandbox)."""
        assert self.sandbox is not None
        namespace: dict[str, Any] = {}
        for name in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}):
            module = MODULES.get(name) or f"opslab.grading.{name}"
            if name in MODULES or (name.endswith("_checks") and importlib.util.find_spec(module)):
                namespace[name] = importlib.import_module(module)
            elif not hasattr(builtins, name):
                namespace[name] = self.sandbox.get(name)
        return namespace

    def _call(self, tree: ast.Expression, namespace: dict[str, Any]) -> Any:
        body = tree.body
        globals_ = {"__builtins__": builtins, **namespace}
        if isinstance(body, ast.Call):
            function = eval(compile(ast.Expression(body.func), "<test>", "eval"), globals_)
            if remote.is_host_network(function):
                args = [eval(compile(ast.Expression(a), "<test>", "eval"), globals_)
                        for a in body.args]  # fmt: skip
                kwargs = {k.arg: eval(compile(ast.Expression(k.value), "<test>", "eval"), globals_)
                          for k in body.keywords if k.arg}  # fmt: skip
                return self._host_check(function, args, kwargs)
        return eval(compile(tree, "<test>", "eval"), globals_)

    def _host_check(self, function: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """A check that drives the host's container engine: run in the host network, as data."""
        from opslab.grading.common import Failed

        payload = {"fn": remote.key(function), "args": wire.encode(args),
                   "kwargs": wire.encode(kwargs)}  # fmt: skip
        netns = [] if self.host_net_fd is None else [
            "nsenter", f"--net=/proc/{os.getpid()}/fd/{self.host_net_fd}", "--"]  # fmt: skip
        done = subprocess.run(
            [*netns, sys.executable, "-m", "opslab.sandbox.hostcheck"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=HOST_CHECK_SECONDS,
            pass_fds=() if self.host_net_fd is None else (self.host_net_fd,),
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        reply = json.loads(lines[-1]) if lines else {"internal": done.stderr[-2000:]}
        if "failed" in reply:
            return Failed(str(reply["failed"]))
        if "raised" in reply:
            raise remote.rebuild(reply["raised"])
        if "internal" in reply:
            raise RuntimeError(f"host check failed: {reply['internal']}")
        return None


def grade(job: dict[str, Any], judge: Judge) -> dict[str, Any]:
    """Run the cells, then every test case; the result as data."""
    cases: list[CaseResult] = []
    try:
        judge.run_cells()
        for question in job["tests"]:
            for case in question["cases"]:
                result = CaseResult(question["name"], float(case["points"] or 0), case["hidden"])
                result.passed, result.message = judge.evaluate(case["code"])
                cases.append(result)
    finally:
        if judge.sandbox is not None:
            output_bytes, tail = judge.sandbox.output_bytes, judge.sandbox.output_tail()
            judge.sandbox.kill()
        else:
            output_bytes, tail = 0, ""
    return {
        "cells": [asdict(c) for c in judge.results],
        "cases": [asdict(c) for c in cases],
        "restarts": judge.restarts,
        "output_bytes": output_bytes,
        "output_tail": tail[-4000:],
    }


def import_answer_keys() -> None:
    """Import every module of opslab.grading.keys, so the checks have them once hidden."""
    from opslab.grading import keys

    for module in pkgutil.iter_modules(keys.__path__, keys.__name__ + "."):
        importlib.import_module(module.name)


def main() -> int:
    """JSON job on stdin -> JSON result on the original stdout (prints go to stderr)."""
    logging.basicConfig(level=logging.WARNING, format="judge: %(message)s")
    job = json.loads(sys.stdin.read(MAX_JOB))
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    host_net = os.open("/proc/self/ns/net", os.O_RDONLY)
    import_answer_keys()  # before they are hidden from everything started from here on
    confine.enter_private_namespaces([Path(p) for p in job["hidden"]])
    confinement = confine.Confinement(int(job["uid"]), confine.Limits())
    confine.ACTIVE = confinement
    result = grade(job, Judge(list(job["cells"]), confinement, host_net))
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
