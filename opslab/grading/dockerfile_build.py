"""Review question 1b, for real: build the learner's Dockerfile with podman, run it, stop it.

The parse rules (`opslab.grading.dockerfile`) say whether the text follows the rules; this
check says whether it WORKS: the image builds from the question's context
(`q1b_context/`), the container answers GET /healthz, its PID 1 is not root, its
HEALTHCHECK really probes the app, and `podman stop` ends it quickly (the exec-form app got
SIGTERM; a shell in front of it would have been SIGKILLed after the grace period).

The HEALTHCHECK is read from the built image (built `--format docker`: the OCI format has no
health check) and its command is run twice: inside the running container, where it must
succeed, and as the command of a second container of the same image, without network and
with the app not started, where it must FAIL. A check that passes when the app is not running
(`HEALTHCHECK CMD true`, a `python -c "print()"`) tells the engine nothing.

Offline, as on this machine: nothing can be pulled, so every Python base (`python:<tag>`,
with or without docker.io/library/) is replaced in the FROM lines by a local "python-like"
image (Debian bookworm from debootstrap, with a venv at /usr/local: `python` and `pip` on
PATH), built once and kept. Rewriting the FROM lines, rather than tagging fake
`python:*` images, leaves nothing misleading in the engine's storage and lets two gradings
run in parallel. PyPI is out of reach from containers, so a pip.conf (`no-index`,
`find-links = /wheels`) and the host-built wheels are mounted for the RUN steps: the
learner's own `pip install -r requirements.txt` works unchanged. apt reaches the Debian
mirror over plain HTTP. The container and the image are always removed.
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

import httpx

from opslab.caps import MissingCapability, find_binary, install_hint, strict_mode
from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.grading.dockerfile import parse_dockerfile
from opslab.sandbox.remote import host_network

CONTEXT = Path(__file__).with_name("q1b_context")
PYTHON_LIKE = "localhost/opslab-python-like:3.11-bookworm"
PYTHON_LIKE_RECIPE = (
    "FROM {base}\n"
    "RUN python3 -m venv /usr/local && /usr/local/bin/python -m pip --version\n"
    'ENV LANG="C.UTF-8"\n'
)
PIP_CONF = "[global]\nno-index = true\nfind-links = /wheels\n"
GRADING_LABEL = "opslab.grading=q1b"
BUILD_SECONDS = 240.0
READY_SECONDS = 30.0
STOP_GRACE = 10  # podman stop -t: SIGTERM, then SIGKILL after this many seconds
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


def podman() -> str | None:
    """The podman CLI, if installed (builds need `podman build -v`, which Docker lacks)."""
    return find_binary("podman")


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _image_exists(cli: str, ref: str) -> bool:
    return _run(cli, "image", "exists", ref).returncode == 0


# ----- the offline Python base --------------------------------------------------------------


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    from opslab.images import WHEEL_CACHE

    WHEEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(WHEEL_CACHE.parent / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_python_like(cli: str) -> str:
    """The local stand-in for `python:*` images; built once (seconds) from the base image."""
    with _lock("python-like"):
        if _image_exists(cli, PYTHON_LIKE):
            return PYTHON_LIKE
        from opslab.images import BASE_TAG

        base = BASE_TAG
        if not _image_exists(cli, BASE_TAG):  # first time on this machine: debootstrap
            from opslab.containers import engine, ensure_base_image

            base, _ = ensure_base_image(engine().client)
        if base != BASE_TAG:  # a real Python image was there (or pulled): use it as it is
            _run(cli, "tag", base, PYTHON_LIKE)
            return PYTHON_LIKE
        with tempfile.TemporaryDirectory(prefix="opslab-python-like-") as tmp:
            Path(tmp, "Dockerfile").write_text(PYTHON_LIKE_RECIPE.format(base=base))
            done = _run(cli, "build", "--format", "docker", "--pull=never", "-t", PYTHON_LIKE,
                        tmp, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"building {PYTHON_LIKE} failed:\n{done.stdout}{done.stderr}")
    return PYTHON_LIKE


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


def remove_orphans(cli: str) -> list[str]:
    """Remove q1b containers and images whose grading process is gone (it was killed)."""
    from opslab import pidfiles
    from opslab.containers import OWNER_LABEL

    removed = []
    for kind in ("container", "image"):
        listing = ["ps", "-a"] if kind == "container" else ["images"]
        done = _run(cli, *listing, "--filter", f"label={GRADING_LABEL}", "--format", "json")
        for item in json.loads(done.stdout or "[]") if done.returncode == 0 else []:
            if kind == "image" and not item.get("Names"):
                continue  # an untagged layer of a builder stage: the build cache, kept
            owner = (item.get("Labels") or {}).get(OWNER_LABEL, "")
            pid, _, started = owner.partition(":")
            if pid.isdigit() and str(pidfiles.start_time(int(pid))) == started:
                continue  # its grader still runs
            ref = item["Names"][0]
            _run(cli, "rm" if kind == "container" else "rmi", "-f", ref)
            removed.append(ref)
    return removed


def _failing_step(log: str) -> str:
    steps = re.findall(r"STEP \d+/\d+: (.*)", log)
    return steps[-1].strip() if steps else "(before the first step)"


def _tail(text: str, lines: int = LOG_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if "systemd" not in line]
    return "\n".join("    " + line for line in kept[-lines:])


def build(cli: str, context: Path, tag: str, buildargs: dict[str, str], wheels: Path) -> float:
    """`podman build` with the offline pip.conf and wheels mounted; seconds it took."""
    conf = context.parent / "pip.conf"
    conf.write_text(PIP_CONF)
    cmd = [cli, "build", "--format", "docker", "--pull=never", "--layers", "-t", tag,
           *_owner_labels(), "-v", f"{conf}:/etc/pip.conf:ro", "-v", f"{wheels}:/wheels:ro",
           *[f"--build-arg={k}={v}" for k, v in buildargs.items()], str(context)]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
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
    healthcheck: list[str] | None = None  # the command, as `podman exec` would run it
    health_running: int | None = None  # its exit code inside the running container
    health_idle: int | None = None  # its exit code in a container where the app is not running


def _wait_healthz(cli: str, name: str, port: int) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return time.perf_counter() - started
            state = _run(cli, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
            status, _, code = state.stdout.strip().partition(" ")
            expired = time.perf_counter() - started > READY_SECONDS
            if status in {"exited", "stopped"} or expired:
                done = _run(cli, "logs", name)
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


def _pid1(cli: str, name: str) -> tuple[int | None, str]:
    """PID 1's user id and command line, read inside the container."""
    status = _run(cli, "exec", name, "cat", "/proc/1/status").stdout
    uid = re.search(r"^Uid:\s+\d+\s+(\d+)", status, re.M)
    cmdline = _run(cli, "exec", name, "cat", "/proc/1/cmdline").stdout
    return (int(uid.group(1)) if uid else None), " ".join(cmdline.split("\0")).strip()


def healthcheck_command(cli: str, tag: str) -> list[str] | None:
    """The image's HEALTHCHECK as an argv (CMD-SHELL through /bin/sh), None when it has none."""
    done = _run(cli, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag)
    test = (json.loads(done.stdout or "null") or {}).get("Test") if done.returncode == 0 else None
    if not test or test[0] == "NONE" or len(test) < 2:
        return None
    return ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


def _health_problems(cli: str, tag: str, name: str, report: RunReport) -> list[str]:
    """Run the HEALTHCHECK against the running app (must pass) and without it (must fail)."""
    command = report.healthcheck = healthcheck_command(cli, tag)
    if command is None:
        return ["the image has no HEALTHCHECK (add `HEALTHCHECK CMD [...]` to the final stage)"]
    shown = " ".join(command)
    idle_name = f"{name}-idle"  # no app started in it: the entrypoint is the health check
    try:
        running = _run(cli, "exec", name, *command, timeout=HEALTH_SECONDS)
        idle = _run(cli, "run", "--name", idle_name, "--network", "none", "--no-healthcheck",
                    *_owner_labels(), "--entrypoint", command[0], tag, *command[1:],
                    timeout=HEALTH_SECONDS)  # fmt: skip
    except subprocess.TimeoutExpired:
        return [f"the HEALTHCHECK command `{shown}` ran longer than {HEALTH_SECONDS:g} s"]
    finally:
        _run(cli, "rm", "-f", "-t", "0", idle_name)
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


def run_and_stop(cli: str, tag: str, report: RunReport) -> list[str]:
    """Run the image, wait for /healthz, check PID 1's user and how fast it stops: problems."""
    from opslab.procs import free_port

    name, port = f"opslab-q1b-{uuid.uuid4().hex[:10]}", free_port()
    try:
        done = _run(cli, "run", "-d", "--name", name, *_owner_labels(), "--no-healthcheck",
                    "-p", f"127.0.0.1:{port}:8080", tag)  # fmt: skip
        if done.returncode != 0:
            raise CheckFailed(f"The container did not start:\n{_tail(done.stderr)}")
        report.ready_seconds = _wait_healthz(cli, name, port)
        report.uid, report.pid1 = _pid1(cli, name)
        health = _health_problems(cli, tag, name, report)
        started = time.perf_counter()
        _run(cli, "stop", "-t", str(STOP_GRACE), name, timeout=STOP_GRACE + 30)
        report.stop_seconds = time.perf_counter() - started
        code = _run(cli, "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        report.exit_code = int(code) if code.lstrip("-").isdigit() else None
    finally:
        _run(cli, "rm", "-f", "-t", "0", name)
    problems = []
    if report.uid in {0, None}:
        problems.append(
            f"the app runs as root (PID 1 `{report.pid1}` has uid {report.uid}): add a `USER` "
            "with an unprivileged user to the final stage"
        )
    if report.stop_seconds > STOP_FAST or report.exit_code == 137:
        problems.append(
            f"`podman stop` took {report.stop_seconds:.1f} s and the exit code was "
            f"{report.exit_code} (137 = SIGKILLed after the {STOP_GRACE} s grace period): PID 1 "
            f"is `{report.pid1}`, which did not end on SIGTERM. Start the app in exec form, "
            '`CMD ["uvicorn", ...]`, so that uvicorn itself is PID 1'
        )
    return problems + health


def build_and_run(text: str) -> RunReport:
    """Build `text` in the question's context, run it, stop it; raise CheckFailed on a problem."""
    from opslab.images import dependency_wheels

    cli = podman()
    if cli is None:
        raise MissingCapability("podman is not installed")
    if len(parse_dockerfile(text)) < 2:
        raise CheckFailed(
            "Not built: the Dockerfile has a single stage. Rule 1 comes first: a builder stage "
            "and a final stage (the build-and-run check then builds it)."
        )
    dockerfile, buildargs = offline_dockerfile(text, ensure_python_like(cli))
    wheels = dependency_wheels()
    remove_orphans(cli)
    report = RunReport()
    tag = f"localhost/opslab-q1b:{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="opslab-q1b-"))
    # One build at a time: removing one grader's image while another build looks up the
    # same cached layers fails that build ("layer not known"); `make grade` runs two at once.
    with _lock("q1b-build"):
        try:
            context = tmp / "context"
            shutil.copytree(CONTEXT, context, ignore=shutil.ignore_patterns("__pycache__"))
            (context / "Dockerfile").write_text(dockerfile)
            report.build_seconds = build(cli, context, tag, buildargs, wheels)
            problems = run_and_stop(cli, tag, report)
        finally:
            _run(cli, "rmi", "-f", tag)
            shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        raise CheckFailed("The image builds and answers /healthz, but " + "; and ".join(problems))
    return report


@host_network  # the judge runs it in the host's network: the engine needs the mirror for apt
@friendly
def check_dockerfile_runs(text: object) -> None:
    """Build the Dockerfile, run it, GET /healthz, check non-root, the health check, a fast stop.

    Without podman: in strict mode (OPSLAB_STRICT=1) raise MissingCapability; otherwise
    pass with a note on stderr (the parse rules already checked the same rules).
    """
    require_answer(text, "Dockerfile (a string)")
    if not isinstance(text, str) or not parse_dockerfile(text):
        raise CheckFailed("`dockerfile` should be a string holding a Dockerfile with a FROM line.")
    if podman() is None:
        if strict_mode():
            raise MissingCapability(
                "container-engine (podman) is needed to build the Dockerfile; install it with:\n"
                f"{install_hint('container-engine')}\n(OPSLAB_STRICT is set: missing tools are "
                "errors)"
            )
        print(SKIPPED, file=sys.stderr)  # stderr: otter's doctest compares stdout only
        return
    build_and_run(text)
