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
# `pip install -r requirements.txt` (or `pip wheel -r ...`, `uv pip install -r ...`)
PIP_REQUIREMENTS = re.compile(
    r"\bpip3?\s+(?:install|wheel|sync)\b[^;&|]*?(?:\s-r\s*|\s--requirements?[=\s]\s*)\S*requirements"
)
OFFLINE_INSTALL = re.compile(r"--no-index\b")
# Where a builder leaves installed dependencies: a venv, a prefix, site-packages, wheels.
DEPENDENCY_DIRS = re.compile(
    r"venv|site-packages|dist-packages|wheel|/install\b|/usr/local|\.local|/opt/|/deps|/packages"
)
INSTALL_TARGET = re.compile(
    r"(?:\bvenv\s+(?:--?\S+\s+)*|--prefix[=\s]\s*|--target[=\s]\s*|-t\s+|--root[=\s]\s*"
    r"|-w\s+|--wheel-dir[=\s]\s*)(/[^\s;&|]+)"
)
SLIM_TAG = re.compile(r"slim|alpine|minimal|micro|distroless")
VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")


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


def _arg_default(args: str) -> tuple[str, str]:
    name, _, default = args.partition("=")
    return name.strip(), default.strip().strip('"').strip("'")


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile: comments dropped, backslash continuations joined.

    A base written with a global ARG (`ARG BASE_IMAGE=python:3.11-slim`, `FROM ${BASE_IMAGE}`)
    is resolved to the ARG's default: that is the image a plain `docker build` uses.
    """
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
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
        if keyword == "ARG" and not stages:
            name, default = _arg_default(args)
            global_args[name] = default
        elif keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            base = words[0] if words else ""
            base = VARIABLE.sub(lambda m: global_args.get(m.group(1), m.group(0)), base)
            stages.append(Stage(base=base, name=name))
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


def _words(args: str) -> list[str]:
    """Shell words of an instruction's arguments (plain split when the quotes do not match)."""
    try:
        return shlex.split(args)
    except ValueError:
        return args.split()


def _is_source_copy(copy: Instruction) -> bool:
    words = [w for w in _words(copy.args) if not w.startswith("--")]
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


def _stage_of(stages: list[Stage], ref: str) -> int | None:
    """The index of the stage that `ref` (a stage name or number) names, if any."""
    for index, stage in enumerate(stages):
        if stage.name and stage.name.lower() == ref.lower():
            return index
    return int(ref) if ref.isdigit() and int(ref) < len(stages) else None


def _lineage(stages: list[Stage], index: int) -> list[int]:
    """The stage's index and those of the earlier stages it starts FROM, nearest first."""
    chain = [index]
    while (parent := _stage_of(stages[: chain[-1]], stages[chain[-1]].base)) is not None:
        chain.append(parent)
    return chain


def _image_of(stages: list[Stage], index: int) -> str:
    """The external image a stage is built on (following `FROM <earlier stage>`)."""
    return stages[_lineage(stages, index)[-1]].base


def _installs_requirements(stage: Stage) -> bool:
    return any(PIP_REQUIREMENTS.search(run.args) for run in stage.all("RUN"))


def _rule_slim_base(stages: list[Stage]) -> str | None:
    image = _image_of(stages, len(stages) - 1)
    if VARIABLE.search(image):
        return f"The final stage's base `{image}` has no default: give the ARG a default value."
    path, _, tag = image.split("@")[0].rpartition(":")
    if ":" not in image.split("@")[0] or "/" in tag:
        path, tag = image.split("@")[0], ""
    if image == "scratch" or "distroless" in path or SLIM_TAG.search(tag):
        return None
    return (
        f"The final stage runs on `{image}`, a full image (compilers, headers, hundreds of "
        "packages the app never uses). Start the final stage from a slim runtime base, e.g. "
        "`python:3.11-slim` (or -alpine, or a distroless image); only the builder needs more."
    )


def _rule_deps_from_builder(stages: list[Stage]) -> str | None:
    final = stages[-1]
    builders = [i for i, s in enumerate(stages[:-1]) if _installs_requirements(s)]
    if not builders:
        return (
            "No builder stage installs the dependencies: run `pip install -r requirements.txt` "
            "in the builder (into a venv or a prefix), then copy the result into the final stage."
        )
    for run in final.all("RUN"):
        if PIP_REQUIREMENTS.search(run.args) and not OFFLINE_INSTALL.search(run.args):
            return (
                f"The final stage installs the requirements from the index (`RUN {run.args}`): "
                "that download and build is what the builder is for. Copy the installed "
                "dependencies from the builder with `COPY --from=<builder> /venv /venv`."
            )
    for copy in final.all("COPY"):
        found = re.search(r"--from=(\S+)", copy.args)
        source = _stage_of(stages[:-1], found.group(1)) if found else None
        if source is None or not set(_lineage(stages, source)) & set(builders):
            continue
        runs = [r.args for i in _lineage(stages, source) for r in stages[i].all("RUN")]
        targets = {t for run in runs for t in INSTALL_TARGET.findall(run)}
        words = [w for w in _words(copy.args) if not w.startswith("--")]
        for src in words[:-1]:
            src = _expand(stages, src)
            if DEPENDENCY_DIRS.search(src) or any(src.startswith(t) for t in targets):
                return None
    return (
        "The final stage does not take the installed dependencies from the builder: copy them "
        "with `COPY --from=<builder> ...` (the venv, the `--prefix` directory, site-packages or "
        "the wheels the builder made), so the final stage downloads and builds nothing."
    )


def _expand(stages: list[Stage], text: str) -> str:
    """`$VAR` in a COPY path, from the ENV and ARG defaults of every stage."""
    values: dict[str, str] = {}
    for stage in stages:
        for i in stage.instructions:
            if i.keyword in {"ENV", "ARG"}:
                for pair in _words(i.args):
                    name, _, value = pair.partition("=")
                    values[name] = value
    return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


RULES: dict[str, Callable[[list[Stage]], str | None]] = {
    "stages": _rule_stages,
    "non-root": _rule_non_root,
    "exec-form": _rule_exec_form,
    "no-build-tools": _rule_no_build_tools,
    "slim-base": _rule_slim_base,
    "deps-from-builder": _rule_deps_from_builder,
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
