"""Dockerfile rules for review question 1, checked by parsing the text (no engine needed)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from opslab.grading.common import CheckFailed, friendly, require_answer

BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|python3?-dev|libpq-dev|git|pip wheel)\b"
)
DEPENDENCY_FILES = re.compile(r"(requirements[\w.-]*\.txt|constraints[\w.-]*\.txt|wheels?/?)$")
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")


@dataclass
class Instruction:
    """One instruction: upper-case keyword, its arguments as written."""

    keyword: str
    args: str


@dataclass
class Stage:
    """A build stage: its FROM line and the instructions that follow it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """The stage's instructions with this keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile: comments dropped, backslash continuations joined."""
    stages: list[Stage] = []
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending.strip():
        logical.append(pending)
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0] if words else "", name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def _is_exec_form(args: str) -> bool:
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _rule_stages(stages: list[Stage]) -> str | None:
    if len(stages) < 2:
        return "Use at least two stages: a builder stage and a final (runtime) stage."
    if not any(i.args.startswith("--from") for i in stages[-1].all("COPY")):
        return "The final stage should take the built result with `COPY --from=<builder> ...`."
    return None


def _rule_non_root(stages: list[Stage]) -> str | None:
    users = stages[-1].all("USER")
    if not users:
        return "The final stage runs as root: add a `USER` line with an unprivileged user."
    user = users[-1].args.split(":")[0].strip()
    if user in {"root", "0", ""}:
        return f"The last `USER` in the final stage is {user!r}: pick an unprivileged user."
    return None


def _rule_exec_form(stages: list[Stage]) -> str | None:
    starts = stages[-1].all("CMD") + stages[-1].all("ENTRYPOINT")
    if not starts:
        return "The final stage needs a `CMD` or `ENTRYPOINT` that starts the app."
    for start in starts:
        if not _is_exec_form(start.args):
            return (
                f"`{start.keyword} {start.args}` is shell form: /bin/sh becomes PID 1 and does "
                'not pass SIGTERM on. Use exec form: `CMD ["program", "arg", ...]`.'
            )
    return None


def _rule_no_build_tools(stages: list[Stage]) -> str | None:
    final = stages[-1]
    earlier = {s.name for s in stages[:-1] if s.name}
    if final.base in earlier:
        return f"The final stage starts `FROM {final.base}`, so it inherits the build tools."
    for run in final.all("RUN"):
        found = BUILD_TOOLS.search(run.args)
        if found:
            return f"The final stage installs or uses `{found.group(0)}`: build in the builder."
    return None


def _is_source_copy(copy: Instruction) -> bool:
    words = [w for w in shlex.split(copy.args) if not w.startswith("--")]
    sources = words[:-1]
    return any(not DEPENDENCY_FILES.search(s.rstrip("/")) for s in sources)


def _rule_deps_first(stages: list[Stage]) -> str | None:
    for stage in stages:
        kinds = []
        for i in stage.instructions:
            if i.keyword in {"COPY", "ADD"} and not i.args.startswith("--from"):
                kinds.append("source" if _is_source_copy(i) else "deps")
            elif i.keyword == "RUN" and PIP_INSTALL.search(i.args):
                kinds.append("install")
        if "install" not in kinds:
            continue
        before = kinds[: kinds.index("install")]
        if "deps" in before and "source" not in before:
            return None
        return (
            "Copy only the dependency list (requirements.txt) and install it BEFORE copying the "
            "source: then a change to the code reuses the cached dependency layer."
        )
    return "No stage installs the dependencies with `pip install -r requirements.txt`."


def _rule_healthcheck(stages: list[Stage]) -> str | None:
    checks = stages[-1].all("HEALTHCHECK")
    if not checks or checks[-1].args.upper().startswith("NONE"):
        return "Add a `HEALTHCHECK ... CMD [...]` to the final stage that asks /healthz."
    if " CMD" not in f" {checks[-1].args.upper()}":
        return "A HEALTHCHECK needs a `CMD` that exits 0 when the app is healthy."
    return None


RULES: dict[str, Callable[[list[Stage]], str | None]] = {
    "stages": _rule_stages,
    "non-root": _rule_non_root,
    "exec-form": _rule_exec_form,
    "no-build-tools": _rule_no_build_tools,
    "deps-first": _rule_deps_first,
    "healthcheck": _rule_healthcheck,
}


@friendly
def check_dockerfile(text: object, rule: str) -> None:
    """Fail with the rule's hint when the Dockerfile text breaks `rule` (a key of RULES)."""
    require_answer(text, "Dockerfile (a string)")
    if not isinstance(text, str) or not parse_dockerfile(text):
        raise CheckFailed("`dockerfile` should be a string holding a Dockerfile with a FROM line.")
    problem = RULES[rule](parse_dockerfile(text))
    if problem:
        raise CheckFailed(problem)
