"""The deploy steps: start green, check it, publish its assets, switch, confirm, stop blue.

nginx is configured once (`init`) to send every request to one Unix socket path,
`STATE_DIR/sockets/live.sock`. A switch is a rename of a new hard link over that path:
atomic, and nginx is never reloaded, so no connection of a client is ever closed by a
deploy (a reload closes every idle keep-alive connection, and a request a client sends
on one at that moment is lost). nginx's next new connection reaches green; blue answers
what it already has, each answer with `Connection: close` while it drains.

State lives in `STATE_DIR/state.json` (mode 0600: it holds the releases' settings): the
live instance (blue), the previous release (for rollback), nginx's paths and URL, and
the settings every release gets. Every command that changes it holds `STATE_DIR/lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sample_app.deploy.instances import (
    DeployError,
    Instance,
    alive,
    get_json,
    handover_path,
    read_release,
    start_instance,
    stop_instance,
    wait_ready,
    write_private,
)
from sample_app.deploy.nginxconf import nginx_run, render_app_conf

log = logging.getLogger("sample_app.deploy")

STATE_FILE = "state.json"
LIVE_SOCKET = "live.sock"
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
# nginx drops an idle upstream connection after this; a draining instance waits longer,
# so none is left for nginx to send a request on at the moment the instance closes it.
UPSTREAM_IDLE = 2.0
DRAIN_SECONDS = UPSTREAM_IDLE + 1.0

__all__ = ["DeployError", "deploy", "init", "load_state", "rollback", "status", "stop"]


def load_state(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The deploy state, or an error naming the missing `init`."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        raise DeployError(f"no deploy state in {state_dir}: run `init` first")
    return dict(json.loads(path.read_text()))


def save_state(state_dir: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state atomically (a crash never leaves half a file), mode 0600."""
    write_private(Path(state_dir) / STATE_FILE, json.dumps(state, indent=2))


@contextlib.contextmanager
def locked(state_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the state's lock: a second deploy, rollback or stop at once is refused."""
    path = Path(state_dir) / "lock"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DeployError(
                f"another deploy command (pid {holder}) holds {path}: wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _sockets(state_dir: Path) -> Path:
    return state_dir.resolve() / "sockets"


def init(
    state_dir: str | os.PathLike[str], *, nginx: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """A fresh state, and nginx pointed at the live socket (its one reload, before any
    release is live). nginx's paths and URL, and the settings shared by all releases."""
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    with locked(state_dir):
        if (state_dir / STATE_FILE).is_file() and load_state(state_dir).get("live"):
            raise DeployError(f"{state_dir} has a live release: `stop` it before `init`")
        sockets = _sockets(state_dir)
        sockets.mkdir(mode=0o700, exist_ok=True)
        os.chmod(sockets, 0o700)
        live = sockets / LIVE_SOCKET
        if len(str(live)) > SOCKET_PATH_MAX:
            raise DeployError(f"state directory path too long for a Unix socket: {live}")
        _configure_nginx(nginx, live)
        state = {"nginx": nginx, "env": env, "live": None, "previous": None, "history": []}
        save_state(state_dir, state)
    return state


def _configure_nginx(nginx: dict[str, Any], live: Path) -> None:
    """Render app.conf for the live socket: `nginx -t`, reload; the old file kept on failure."""
    app_conf = Path(nginx["app_conf"])
    old = app_conf.read_text() if app_conf.is_file() else None
    values = {
        **nginx["values"],
        "upstream_keepalive_timeout": f"{UPSTREAM_IDLE:g}s",
    }
    app_conf.write_text(render_app_conf([f"unix:{live}"], **values))
    for step in (("-t",), ("-s", "reload")):
        ok, output = nginx_run(nginx, *step)
        if not ok:
            if old is not None:
                app_conf.write_text(old)
            raise DeployError(f"nginx {' '.join(step)} failed (config left as it was):\n{output}")
    log.info("nginx sends to %s (config valid, reloaded once)", live)


def _point_live_at(state_dir: Path, instance: Instance, replaced: Instance | None) -> None:
    """Make `live.sock` the instance's socket: a new hard link renamed over it (atomic).

    nginx's next new connection reaches `instance`; `replaced` is told (its handover
    file) to end each kept-alive connection after its answer, so nginx opens new ones.
    """
    sockets = _sockets(state_dir)
    tmp = sockets / f".{LIVE_SOCKET}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.link(instance.socket, tmp)
    handover_path(instance.socket).unlink(missing_ok=True)
    os.replace(tmp, sockets / LIVE_SOCKET)
    # Told: the instance the state names, and whatever was bound to the live path itself
    # (an instance started there by hand, which the state does not know). Without its
    # handover file it would keep nginx's kept-alive connections, and their requests, forever.
    told = {handover_path(sockets / LIVE_SOCKET)}
    if replaced is not None:
        told.add(handover_path(replaced.socket))
    for path in told:
        path.touch(mode=0o600)
    log.info("switched: %s now reaches %s (no nginx reload)", LIVE_SOCKET, instance.instance_id)


def _https_context(nginx: dict[str, Any]) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=nginx["cafile"]) if nginx.get("cafile") else None


def _fetch(nginx: dict[str, Any], path: str) -> tuple[int, Any, bytes]:
    """GET `path` through nginx: (status, headers, body); an unanswered request raises."""
    try:
        with urllib.request.urlopen(
            f"{nginx['url']}{path}", timeout=5, context=_https_context(nginx)
        ) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _confirm(nginx: dict[str, Any], green: Instance, *, needed: int, timeout: float) -> None:
    """Wait until `needed` requests in a row through nginx were answered by green."""
    streak, deadline, seen = 0, time.monotonic() + timeout, "nothing"
    while streak < needed:
        if time.monotonic() > deadline:
            raise DeployError(f"nginx did not send to {green.instance_id} in {timeout:g}s: {seen}")
        try:
            _status, headers, _body = _fetch(nginx, "/version")
            seen = headers.get("X-Instance", "no X-Instance header")
        except OSError as error:
            seen = str(error)
        streak = streak + 1 if seen == green.instance_id else 0
        time.sleep(0.02 if streak else 0.05)
    log.info("confirmed through nginx: %d requests in a row answered by %s", needed, seen)


def _static_files(release: Path) -> list[Path]:
    static = release / "sample_app" / "static"
    return sorted(p for p in static.rglob("*") if p.is_file() and p.name != "manifest.json")


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def publish_assets(nginx: dict[str, Any], release: Path) -> int:
    """Copy the release's static files where nginx serves them, next to older releases'
    (a page of the draining release still asks for its own), then fetch each through
    nginx and compare its bytes. How many were checked."""
    source = release / "sample_app" / "static"
    target = Path(nginx["values"]["static_root"]) / "static"
    files = _static_files(release)
    for path in files:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest.with_name(f".{dest.name}.tmp"))
        os.replace(dest.with_name(f".{dest.name}.tmp"), dest)
    for path in files:
        url = f"/static/{path.relative_to(source).as_posix()}"
        status, _headers, body = _fetch(nginx, url)
        if status != 200 or _digest(body) != _digest(path.read_bytes()):
            raise DeployError(f"nginx does not serve the release's {url} (got {status})")
    log.info("published %d static files; nginx serves each with the release's bytes", len(files))
    return len(files)


def _abort(green: Instance, reason: str) -> DeployError:
    """Stop green; the error (the reason, printed once by the CLI) for the caller."""
    log.error("ABORT: stopping green %s: %s", green.instance_id, stop_instance(green))
    return DeployError(f"{reason}\nThe live release was left serving; {green.release} was stopped.")


def _release_env(state: dict[str, Any], release: Path) -> dict[str, str]:
    """The settings green gets; a release must say which environment it runs in."""
    env = {"DRAIN_SECONDS": f"{DRAIN_SECONDS:g}", **state["env"]}
    if "APP_ENV" not in {**env, **read_release(release)["env"]}:
        raise DeployError(
            f"APP_ENV is not set for {release.name} (neither at init nor at install): a "
            "release must name its environment; nothing was started"
        )
    return env


def _start_checked(
    state: dict[str, Any], release: Path, expect: str, timeout: float, state_dir: Path
) -> Instance:
    """Start the release on a new socket; ready, the expected version and assets, or abort."""
    green = start_instance(
        release,
        sockets=_sockets(state_dir),
        env=_release_env(state, release),
        log_dir=state_dir / "logs",
    )
    log.info("started %s (pid %d, log %s)", green.instance_id, green.pid, green.log)
    try:
        if problem := wait_ready(green, timeout=timeout):
            raise DeployError(f"{green.release} is not ready: {problem}")
        log.info("%s is ready (/ready answered 200)", green.release)
        version = get_json(green.socket, "/version").get("version")
        if version != expect:
            raise DeployError(f"{green.release} reports version {version!r}, expected {expect!r}")
        log.info("%s reports version %s, as expected", green.release, version)
        publish_assets(state["nginx"], release)
    except (DeployError, OSError, ValueError) as error:
        raise _abort(green, str(error)) from None
    return green


def deploy(
    state_dir: str | os.PathLike[str],
    release: str | os.PathLike[str],
    *,
    expect_version: str,
    ready_timeout: float = 20.0,
    confirm: int = 5,
    stop_timeout: float = 15.0,
) -> Instance:
    """Blue-green: green on a new socket, checked, switched to, confirmed; then blue stops."""
    state_dir, release = Path(state_dir), Path(release)
    with locked(state_dir):
        return _deploy(state_dir, release, expect_version, ready_timeout, confirm, stop_timeout)


def _deploy(
    state_dir: Path,
    release: Path,
    expect_version: str,
    ready_timeout: float,
    confirm: int,
    stop_timeout: float,
) -> Instance:
    state = load_state(state_dir)
    blue = Instance(**state["live"]) if state["live"] else None
    if blue is not None and not alive(blue):
        log.warning("the recorded live instance %s is not running", blue.instance_id)
    log.info("deploy %s (expect %s); live: %s", release.name, expect_version, blue and blue.release)
    green = _start_checked(state, release, expect_version, ready_timeout, state_dir)
    try:
        _point_live_at(state_dir, green, blue)
    except OSError as error:
        raise _abort(green, f"could not switch {LIVE_SOCKET}: {error}") from None
    try:
        _confirm(state["nginx"], green, needed=confirm, timeout=10.0)
    except DeployError as error:
        if blue is not None and alive(blue):
            _point_live_at(state_dir, blue, green)
        raise _abort(green, str(error)) from None
    if blue is not None:
        state["previous"] = {
            "release": blue.release,
            "path": blue.path,
            "version": blue_version(state),
        }
    state["live"] = green.as_dict()
    state["history"].append(
        {"time": time.time(), "release": green.release, "version": expect_version}
    )
    save_state(state_dir, state)  # from here on green is live, whatever happens to blue
    if blue is not None:
        log.info("draining and stopping blue %s", blue.instance_id)
        log.info("blue %s: %s", blue.release, stop_instance(blue, timeout=stop_timeout))
    log.info("done: %s (%s) is live", green.instance_id, expect_version)
    return green


def blue_version(state: dict[str, Any]) -> str | None:
    """The version the live release was deployed as (from the history)."""
    history = [h for h in state["history"] if h["release"] == state["live"]["release"]]
    return history[-1]["version"] if history else None


def rollback(state_dir: str | os.PathLike[str], **options: Any) -> Instance:
    """Deploy the previous release again, with every check of a deploy."""
    previous = load_state(state_dir).get("previous")
    if not previous:
        raise DeployError("nothing to roll back to: only one release was ever live")
    log.info("rollback to %s (%s)", previous["release"], previous["version"])
    return deploy(state_dir, previous["path"], expect_version=previous["version"], **options)


def status(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What is live (and whether it answers), what a rollback would restore."""
    state = load_state(state_dir)
    report: dict[str, Any] = {"live": None, "previous": state["previous"]}
    if state["live"]:
        instance = Instance(**state["live"])
        running = alive(instance)
        version = get_json(instance.socket, "/version").get("version") if running else None
        report["live"] = {**state["live"], "running": running, "version": version}
    return report


def stop(state_dir: str | os.PathLike[str], *, timeout: float = 15.0) -> str:
    """Stop the live instance (nginx then has nothing to send to: 502)."""
    with locked(state_dir):
        state = load_state(state_dir)
        if not state["live"]:
            return "nothing live"
        instance = Instance(**state["live"])
        (_sockets(Path(state_dir)) / LIVE_SOCKET).unlink(missing_ok=True)
        outcome = stop_instance(instance, timeout=timeout)
        state["live"] = None
        save_state(state_dir, state)
    return f"{instance.release}: {outcome}"
