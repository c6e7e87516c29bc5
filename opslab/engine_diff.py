"""What differs between Docker Engine and podman, measured on a tiny image (section 02).

Three differences a learner meets, each measured, not described:
- **HEALTHCHECK**: a build through the Docker API keeps it on both engines; a build on the
  command line keeps it with `docker build` but not with `podman build`, whose default
  image format is OCI (which has no health check) unless given `--format docker`. It is
  read from a container created from the image: what the engine would run. (podman 4.3's
  Docker-compatible *image* inspect leaves it out even when the image has it.)
- **`--init`**: a shell-form `CMD` makes `sh` PID 1, which ignores SIGTERM: the stop waits
  for the whole grace period. With `--init` the engine puts its own init first (Docker's
  `docker-init`, which is tini; podman's `catatonit`): the stop is quick, but the init
  signals only its child, the shell, so the app still does not shut down by itself.
- **Port publishing**: who holds the published port on the host. Docker Engine runs a
  `docker-proxy` process per port; rootful podman (CNI) rewrites packets with iptables
  DNAT rules and `conmon` only keeps the port reserved.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

from opslab.caps import find_binary
from opslab.containers import OWNER_LABEL, Engine, _owner, cli_argv, cli_env, run_container
from opslab.images import build_image
from opslab.procs import ProcessError

TAG = "localhost/opslab-engines"
# A shell-form CMD whose app has no SIGTERM handler (the default action would end it, but
# it is the shell, PID 1, that gets the signal), and a HEALTHCHECK to see survive a build.
DOCKERFILE = """FROM {base}
HEALTHCHECK --interval=30s CMD ["python3", "-c", "print('healthy')"]
CMD python3 -m http.server 8080
"""


def _cli_healthcheck(engine: Engine, context: Path, tag: str) -> bool | None:
    """Whether a plain command-line build (no extra flags) keeps the HEALTHCHECK."""
    cli = cli_argv(engine.kind, engine.service)
    if cli is None:
        return None
    done = subprocess.run([*cli, "build", "-t", tag, str(context)], capture_output=True,
                          text=True, timeout=300, env=cli_env())  # fmt: skip
    if done.returncode != 0:
        raise ProcessError(f"{' '.join(cli)} build failed:\n{done.stdout}{done.stderr}")
    kept = _has_healthcheck(engine, tag)
    engine.client.images.remove(tag, force=True)
    return kept


def _has_healthcheck(engine: Engine, tag: str) -> bool:
    """Whether a container of `tag` gets a health check (created, never started)."""
    container = engine.client.containers.create(tag, labels={OWNER_LABEL: _owner()})
    try:
        return bool((container.attrs["Config"].get("Healthcheck") or {}).get("Test"))
    finally:
        container.remove(force=True)


def _port_holder(port: int) -> str:
    """The name of the host process listening on 127.0.0.1:port (`ss -ltnp`)."""
    ss = find_binary("ss")
    if ss is None:
        return "?"
    out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    return ", ".join(sorted(set(re.findall(r'"([^"]+)",pid=', out.stdout)))) or "(none)"


def measure(engine: Engine, base: str, *, grace: int = 2) -> dict[str, object]:
    """One row of the comparison: the three differences, measured on `engine`."""
    row: dict[str, object] = {"engine": engine.description.removesuffix(" via Docker API")}
    with tempfile.TemporaryDirectory(prefix="opslab-engines-") as tmp:
        Path(tmp, "Dockerfile").write_text(DOCKERFILE.format(base=base))
        image = build_image(engine.client, Path(tmp), tag=f"{TAG}:api")
        row["HEALTHCHECK kept: API build"] = _has_healthcheck(engine, image.tag)
        row["HEALTHCHECK kept: CLI build"] = _cli_healthcheck(engine, Path(tmp), f"{TAG}:cli")
    for init in (False, True):
        name = f"opslab-engines-{engine.kind}-{'init' if init else 'plain'}"
        running = run_container(engine.client, image.tag, name=name, ready_path="/", init=init)
        try:  # run_container returned once GET / answered 200
            if not init:
                row["published port held by"] = _port_holder(running.port)
            _, cmdline = running.exec("cat", "/proc/1/cmdline")
            started = time.perf_counter()
            running.container.stop(timeout=grace)
            seconds = time.perf_counter() - started
            running.container.reload()
            code = running.container.attrs["State"]["ExitCode"]
        finally:
            running.remove()
        label = "with --init" if init else "shell form"
        row[f"PID 1 ({label})"] = Path(cmdline.split("\0")[0]).name
        row[f"stop seconds ({label})"] = round(seconds, 2)
        row[f"exit code ({label})"] = code
    engine.client.images.remove(image.tag, force=True)
    return row
