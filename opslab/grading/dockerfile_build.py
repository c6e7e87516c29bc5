"""Review question 1b, for real: build the learner's Dockerfile, run it, stop it.

It runs on either engine, through its own CLI: podman, or Docker Engine (a learner's
daemon, or the course's private dockerd, `opslab.containers.DockerdService`).
`OPSLAB_ENGINE` picks one; unset, a reachable Docker daemon, then podman, then dockerd.

The parse rules (`opslab.grading.dockerfile`) say whether the text follows the rules; this
check says whether it WORKS: the image builds from the question's context
(`q1b_context/`), the container answers GET /healthz, its PID 1 is not root, its
HEALTHCHECK really probes the app, and `stop` ends it quickly (the exec-form app got
SIGTERM; a shell in front of it would have been SIGKILLed after the grace period).

The HEALTHCHECK is read from the built image (podman builds `--format docker`: its default
OCI format has no health check; Docker's images always keep it) and its command is run
twice: inside the running container, where it must succeed, and as the command of a second
container of the same image, without network and with the app not started, where it must
FAIL. A check that passes when the app is not running
(`HEALTHCHECK CMD true`, a `python -c "print()"`) tells the engine nothing.

Offline, as on this machine: nothing can be pulled, so every Python base (`python:<tag>`,
with or without docker.io/library/) is replaced in the FROM lines by a local "python-like"
image (Debian bookworm from debootstrap, with a venv at /usr/local: `python` and `pip` on
PATH), built once and kept. Rewriting the FROM lines, rather than tagging fake
`python:*` images, leaves nothing misleading in the engine's storage and lets two gradings
run in parallel. PyPI is out of reach from containers, so the python-like image carries the
host-built wheels in /wheels and a pip.conf (`no-index`, `find-links = /wheels`): the
learner's own `pip install -r requirements.txt` works unchanged, with no `build -v` (which
Docker lacks) and no network. The wheels' hash is part of the image's tag, so new pins make
a new image. The container and the image are always removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from opslab.caps import MissingCapability, install_hint, strict_mode
from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.grading.dockerfile import parse_dockerfile
from opslab.sandbox.remote import host_network

CONTEXT = Path(__file__).with_name("q1b_context")
PYTHON_LIKE = "localhost/opslab-python-like"  # tagged 3.11-<hash of the wheels>
# Debian's python3 has no `python` or `pip` on PATH: a venv at /usr/local gives both, as the
# official image has them. A real Python image (pulled by a learner) only gets the wheels.
VENV_STEP = "RUN python3 -m venv /usr/local && /usr/local/bin/python -m pip --version\n"
PYTHON_LIKE_RECIPE = (
    "FROM {base}\n{venv}COPY wheels/ /wheels/\nCOPY pip.conf /etc/pip.conf\nENV LANG=C.UTF-8\n"
)
PIP_CONF = "[global]\nno-index = true\nfind-links = /wheels\n"
GRADING_LABEL = "opslab.grading=q1b"
BUILD_SECONDS = 240.0
READY_SECONDS = 30.0
STOP_GRACE = 10  # stop -t: SIGTERM, then SIGKILL after this many seconds
STOP_FAST = 5.0  # a PID 1 that got SIGTERM is gone well before the SIGKILL
LOG_LINES = 15
HEALTH_SECONDS = 30.0  # one run of the health-check command, at most
PYTHON_BASE = re.compile(r"^(?:docker\.io/)?(?:library/)?python(?::[\w][\w.-]*)?$")
FROM_LINE = re.compile(r"^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)
ARG_LINE = re.compile(r"^\s*ARG\s+([A-Za-z_]\w*)(?:=(\S*))?\s*$", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")
SKIPPED = (
    "skipped: no container engine (install podman or Docker); the rules were checked by parsing"
)
ENGINE_WAIT = 600.0  # a private dockerd serves one grading at a time: wait for the other


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    from opslab.containers import cli_env

    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, env=cli_env()
    )


@dataclass
class Cli:
    """An engine's command line: podman's, or docker's pointed at one daemon."""

    kind: str  # "podman" or "docker"
    argv: list[str]
    engine: Any = None  # the opslab.containers.Engine behind a docker CLI

    def __call__(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return _run(*self.argv, *args, timeout=timeout)

    def image_exists(self, ref: str) -> bool:
        if self.kind == "podman":
            return self("image", "exists", ref).returncode == 0
        return self("image", "inspect", "--format", "{{.Id}}", ref).returncode == 0

    def build_argv(
        self, context: Path, tag: str, buildargs: dict[str, str], *, owned: bool = True
    ) -> list[str]:
        """Docker's classic builder keeps HEALTHCHECK; podman must be asked (`--format docker`).

        `owned`: labelled with this grading process, so a killed grading's image is removed.
        """
        flags = ["--format", "docker", "--pull=never", "--layers"] if self.kind == "podman" else []
        labels = _owner_labels() if owned else []
        return [*self.argv, "build", *flags, "-t", tag, *labels,
                *[f"--build-arg={k}={v}" for k, v in buildargs.items()], str(context)]  # fmt: skip

    def remove(self, name: str) -> None:
        """Remove a container at once (podman waits its stop grace unless told `-t 0`)."""
        self("rm", "-f", *(["-t", "0"] if self.kind == "podman" else []), name)


def engine_cli(wait: float = ENGINE_WAIT) -> Cli | None:
    """The CLI of the engine `engine_route()` picks (OPSLAB_ENGINE, else the first found)."""
    from opslab.caps import engine_route
    from opslab.containers import cli_argv, engine

    route = engine_route()
    if route == "dockerd":  # started here (or waited for, while another grading has it)
        found = engine("docker", wait=wait)
        argv = cli_argv("docker", found.service)
        return Cli("docker", argv, found) if argv else None
    kind = {"daemon": "docker", "podman": "podman"}.get(route or "")
    argv = cli_argv(kind) if kind else None
    return Cli(kind, argv) if kind and argv else None


def engine_available() -> bool:
    """Whether `engine_cli()` would find an engine (without starting one)."""
    from opslab.caps import engine_route

    return engine_route() is not None


# ----- the offline Python base --------------------------------------------------------------


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    from opslab.images import WHEEL_CACHE

    WHEEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(WHEEL_CACHE.parent / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def python_like_tag(wheels: Path) -> str:
    """The python-like image's tag for these wheels (their cache directory: a hash of pins)."""
    return f"{PYTHON_LIKE}:3.11-{wheels.name}"


def ensure_python_like(cli: Cli, wheels: Path) -> str:
    """The local stand-in for `python:*` images, with `wheels`; built once (seconds)."""
    tag = python_like_tag(wheels)
    with _lock(f"python-like-{cli.kind}"):
        if cli.image_exists(tag):
            return tag
        from opslab.containers import engine
        from opslab.images import BASE_TAG, ensure_base_image

        client = cli.engine.client if cli.engine is not None else engine(cli.kind).client
        base, _ = ensure_base_image(client)  # the first time on this machine: debootstrap
        recipe = PYTHON_LIKE_RECIPE.format(base=base, venv=VENV_STEP if base == BASE_TAG else "")
        with tempfile.TemporaryDirectory(prefix="opslab-python-like-") as tmp:
            Path(tmp, "Dockerfile").write_text(recipe)
            Path(tmp, "pip.conf").write_text(PIP_CONF)
            shutil.copytree(wheels, Path(tmp, "wheels"))
            argv = cli.build_argv(Path(tmp), tag, {}, owned=False)
            done = _run(*argv, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"building {tag} failed:\n{done.stdout}{done.stderr}")
    return tag


def offline_dockerfile(text: str, python_image: str = PYTHON_LIKE) -> tuple[str, dict[str, str]]:
    """The Dockerfile with its Python bases replaced by `python_image`, and the build args.

    Global ARG defaults are resolved in FROM lines (`ARG BASE_IMAGE=python:3.11-slim` then
    `FROM ${BASE_IMAGE}`); a base that is neither a stage nor a Python image fails with
    the list of what the offline grader supports.
    """
    args: dict[str, str] = {}
    stages: set[str] = set()
    lines = text.splitlines()
    seen_from = False
    for index, line in enumerate(lines):
        if not seen_from and (arg := ARG_LINE.match(line)):
            args[arg.group(1)] = arg.group(2) or ""
        if not (found := FROM_LINE.match(line)):
            continue
        seen_from = True
        keyword, flags, image, rest = found.groups()
        resolved = VARIABLE.sub(lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved.lower() in stages:
            pass
        elif PYTHON_BASE.match(resolved) or resolved == python_image:
            lines[index] = f"{keyword}{flags}{python_image}{rest}"
        else:
            raise CheckFailed(
                f"`FROM {image}`"
                + (f" (= {resolved})" if resolved != image else "")
                + " cannot be built here: the offline grader builds on Python images only "
                "(`python:<tag>`, e.g. python:3.11-slim, also as docker.io/library/python, or "
                "through `ARG BASE_IMAGE=python:...`) and on earlier stages of the same file."
            )
        if as_name := re.match(r"\s+AS\s+(\S+)", rest, re.IGNORECASE):
            stages.add(as_name.group(1).lower())
    buildargs = {"BASE_IMAGE": python_image} if "BASE_IMAGE" in args else {}
    return "\n".join(lines) + "\n", buildargs


# ----- build, run, stop --------------------------------------------------------------------


def _owner_labels() -> list[str]:
    from opslab.containers import OWNER_LABEL, _owner

    return ["--label", f"{OWNER_LABEL}={_owner()}", "--label", GRADING_LABEL]


def _labelled(cli: Cli, kind: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(name, labels) of each q1b container or tagged image (untagged layers are the cache)."""
    flags = ["--filter", f"label={GRADING_LABEL}"]
    if cli.kind == "podman":
        listing = ["ps", "-a"] if kind == "container" else ["images"]
        done = cli(*listing, *flags, "--format", "json")
        for item in json.loads(done.stdout or "[]") if done.returncode == 0 else []:
            if item.get("Names"):
                yield item["Names"][0], item.get("Labels") or {}
        return
    listing = ["ps", "-aq"] if kind == "container" else ["images", "-q"]
    ids = cli(*listing, *flags).stdout.split()
    name = "{{.Name}}" if kind == "container" else "{{index .RepoTags 0}}"
    for ident in dict.fromkeys(ids):
        done = cli(kind, "inspect", "--format", "{{json .Config.Labels}} " + name, ident)
        labels, _, ref = done.stdout.strip().partition(" ")
        if done.returncode == 0 and ref:
            yield ref.lstrip("/"), json.loads(labels or "null") or {}


def remove_orphans(cli: Cli) -> list[str]:
    """Remove q1b containers and images whose grading process is gone (it was killed)."""
    from opslab import pidfiles
    from opslab.containers import OWNER_LABEL

    removed = []
    for kind in ("container", "image"):
        for ref, labels in list(_labelled(cli, kind)):
            pid, _, started = labels.get(OWNER_LABEL, "").partition(":")
            if pid.isdigit() and str(pidfiles.start_time(int(pid))) == started:
                continue  # its grader still runs
            cli("rm" if kind == "container" else "rmi", "-f", ref)
            removed.append(ref)
    return removed


def _failing_step(log: str) -> str:
    steps = re.findall(r"(?:STEP|Step) \d+/\d+ ?: (.*)", log)  # podman's, Docker's
    return steps[-1].strip() if steps else "(before the first step)"


def _tail(text: str, lines: int = LOG_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if "systemd" not in line]
    return "\n".join("    " + line for line in kept[-lines:])


def build(cli: Cli, context: Path, tag: str, buildargs: dict[str, str]) -> float:
    """Build the image offline (the python-like base has the wheels); seconds it took."""
    from opslab.containers import cli_env

    cmd = cli.build_argv(context, tag, buildargs)
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=cli_env(),
    )  # fmt: skip
    try:
        log, _ = process.communicate(timeout=BUILD_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        raise CheckFailed(
            f"The image was still building after {BUILD_SECONDS:g} s and was stopped, at step "
            f"`{_failing_step(log)}`. Last lines of the build log:\n{_tail(log)}"
        ) from None
    if process.returncode != 0:
        raise CheckFailed(
            f"The image did not build: step `{_failing_step(log)}` failed. "
            f"Last lines of the build log:\n{_tail(log)}"
        )
    return time.perf_counter() - started


@dataclass
class RunReport:
    """What one build and run measured (for the tests and the report)."""

    build_seconds: float = 0.0
    ready_seconds: float = 0.0
    stop_seconds: float = 0.0
    exit_code: int | None = None
    uid: int | None = None
    pid1: str = ""
    healthcheck: list[str] | None = None  # the command, as `exec` would run it
    health_running: int | None = None  # its exit code inside the running container
    health_idle: int | None = None  # its exit code in a container where the app is not running


def _wait_healthz(cli: Cli, name: str, port: int) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return time.perf_counter() - started
            state = cli("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
            status, _, code = state.stdout.strip().partition(" ")
            expired = time.perf_counter() - started > READY_SECONDS
            if status in {"exited", "stopped"} or expired:
                done = cli("logs", name)
                logs = done.stdout + done.stderr
            if status in {"exited", "stopped"}:
                raise CheckFailed(
                    f"The container exited with code {code} before GET /healthz answered 200 "
                    f"(it should run `uvicorn app.main:app --host 0.0.0.0 --port 8080`). "
                    f"Its log:\n{_tail(logs)}"
                )
            if expired:
                raise CheckFailed(
                    f"GET /healthz on port 8080 gave no 200 within {READY_SECONDS:g} s (does the "
                    f"app listen on 0.0.0.0:8080?). The container's log:\n{_tail(logs)}"
                )
            time.sleep(0.2)


def _pid1(cli: Cli, name: str) -> tuple[int | None, str]:
    """PID 1's user id and command line, read inside the container."""
    status = cli("exec", name, "cat", "/proc/1/status").stdout
    uid = re.search(r"^Uid:\s+\d+\s+(\d+)", status, re.M)
    cmdline = cli("exec", name, "cat", "/proc/1/cmdline").stdout
    return (int(uid.group(1)) if uid else None), " ".join(cmdline.split("\0")).strip()


def healthcheck_command(cli: Cli, tag: str) -> list[str] | None:
    """The image's HEALTHCHECK as an argv (CMD-SHELL through /bin/sh), None when it has none."""
    done = cli("image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag)
    test = (json.loads(done.stdout or "null") or {}).get("Test") if done.returncode == 0 else None
    if not test or test[0] == "NONE" or len(test) < 2:
        return None
    return ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


def _health_problems(cli: Cli, tag: str, name: str, report: RunReport) -> list[str]:
    """Run the HEALTHCHECK against the running app (must pass) and without it (must fail)."""
    command = report.healthcheck = healthcheck_command(cli, tag)
    if command is None:
        return ["the image has no HEALTHCHECK (add `HEALTHCHECK CMD [...]` to the final stage)"]
    shown = " ".join(command)
    idle_name = f"{name}-idle"  # no app started in it: the entrypoint is the health check
    try:
        running = cli("exec", name, *command, timeout=HEALTH_SECONDS)
        idle = cli("run", "--name", idle_name, "--network", "none", "--no-healthcheck",
                    *_owner_labels(), "--entrypoint", command[0], tag, *command[1:],
                    timeout=HEALTH_SECONDS)  # fmt: skip
    except subprocess.TimeoutExpired:
        return [f"the HEALTHCHECK command `{shown}` ran longer than {HEALTH_SECONDS:g} s"]
    finally:
        cli.remove(idle_name)
    report.health_running, report.health_idle = running.returncode, idle.returncode
    if running.returncode != 0:
        return [
            f"the HEALTHCHECK command `{shown}` failed (exit {running.returncode}) while the "
            f"app was answering /healthz:\n{_tail(running.stdout + running.stderr, 5)}\nIs "
            "the program it runs in the final image, and does it ask port 8080?"
        ]
    if idle.returncode == 0:
        return [
            f"the HEALTHCHECK command `{shown}` also succeeds in a container of the image where "
            "the app is not running: it does not probe the app, so the engine would call a dead "
            "app healthy. Make it request http://127.0.0.1:8080/healthz and exit non-zero when "
            "that fails"
        ]
    return []


def run_and_stop(cli: Cli, tag: str, report: RunReport) -> list[str]:
    """Run the image, wait for /healthz, check PID 1's user and how fast it stops: problems."""
    from opslab.procs import free_port

    name, port = f"opslab-q1b-{uuid.uuid4().hex[:10]}", free_port()
    try:
        done = cli("run", "-d", "--name", name, *_owner_labels(), "--no-healthcheck",
                    "-p", f"127.0.0.1:{port}:8080", tag)  # fmt: skip
        if done.returncode != 0:
            raise CheckFailed(f"The container did not start:\n{_tail(done.stderr)}")
        report.ready_seconds = _wait_healthz(cli, name, port)
        report.uid, report.pid1 = _pid1(cli, name)
        health = _health_problems(cli, tag, name, report)
        started = time.perf_counter()
        cli("stop", "-t", str(STOP_GRACE), name, timeout=STOP_GRACE + 30)
        report.stop_seconds = time.perf_counter() - started
        code = cli("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        report.exit_code = int(code) if code.lstrip("-").isdigit() else None
    finally:
        cli.remove(name)
    problems = []
    if report.uid in {0, None}:
        problems.append(
            f"the app runs as root (PID 1 `{report.pid1}` has uid {report.uid}): add a `USER` "
            "with an unprivileged user to the final stage"
        )
    if report.stop_seconds > STOP_FAST or report.exit_code == 137:
        problems.append(
            f"`{cli.kind} stop` took {report.stop_seconds:.1f} s and the exit code was "
            f"{report.exit_code} (137 = SIGKILLed after the {STOP_GRACE} s grace period): PID 1 "
            f"is `{report.pid1}`, which did not end on SIGTERM. Start the app in exec form, "
            '`CMD ["uvicorn", ...]`, so that uvicorn itself is PID 1'
        )
    return problems + health


def build_and_run(text: str) -> RunReport:
    """Build `text` in the question's context, run it, stop it; raise CheckFailed on a problem."""
    from opslab.images import dependency_wheels

    if len(parse_dockerfile(text)) < 2:
        raise CheckFailed(
            "Not built: the Dockerfile has a single stage. Rule 1 comes first: a builder stage "
            "and a final stage (the build-and-run check then builds it)."
        )
    cli = engine_cli()
    if cli is None:
        raise MissingCapability("no container engine (podman or Docker Engine) is installed")
    dockerfile, buildargs = offline_dockerfile(text, ensure_python_like(cli, dependency_wheels()))
    remove_orphans(cli)
    report = RunReport()
    tag = f"localhost/opslab-q1b:{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="opslab-q1b-"))
    # One build at a time: removing one grader's image while another build looks up the
    # same cached layers fails that build ("layer not known"); `make grade` runs two at once.
    with _lock(f"q1b-build-{cli.kind}"):
        try:
            context = tmp / "context"
            shutil.copytree(CONTEXT, context, ignore=shutil.ignore_patterns("__pycache__"))
            (context / "Dockerfile").write_text(dockerfile)
            report.build_seconds = build(cli, context, tag, buildargs)
            problems = run_and_stop(cli, tag, report)
        finally:
            cli("rmi", "-f", tag)
            shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        raise CheckFailed("The image builds and answers /healthz, but " + "; and ".join(problems))
    return report


@host_network  # the judge runs it in the host's network: the engine needs the mirror for apt
@friendly
def check_dockerfile_runs(text: object) -> None:
    """Build the Dockerfile, run it, GET /healthz, check non-root, the health check, a fast stop.

    Without an engine: in strict mode (OPSLAB_STRICT=1) raise MissingCapability; otherwise
    pass with a note on stderr (the parse rules already checked the same rules).
    """
    require_answer(text, "Dockerfile (a string)")
    if not isinstance(text, str) or not parse_dockerfile(text):
        raise CheckFailed("`dockerfile` should be a string holding a Dockerfile with a FROM line.")
    if not engine_available():
        if strict_mode():
            raise MissingCapability(
                "container-engine (podman or Docker) is needed to build the Dockerfile; install "
                "it with:\n"
                f"{install_hint('container-engine')}\n(OPSLAB_STRICT is set: missing tools are "
                "errors)"
            )
        print(SKIPPED, file=sys.stderr)  # stderr: otter's doctest compares stdout only
        return
    build_and_run(text)
