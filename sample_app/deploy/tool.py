"""The deploy steps: start green, check it, switch nginx, confirm, stop blue; or abort.

State lives in `STATE_DIR/state.json`: the live instance (blue), the previous release
(for rollback), nginx's prefix and config paths, and the settings every release gets.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from sample_app.deploy.instances import (
    Instance,
    alive,
    free_port,
    get_json,
    start_instance,
    stop_instance,
    wait_ready,
)
from sample_app.deploy.nginxconf import nginx_run, render_app_conf

log = logging.getLogger("sample_app.deploy")

STATE_FILE = "state.json"


class DeployError(RuntimeError):
    """A deploy step failed; the live release was left serving."""


def load_state(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The deploy state, or an error naming the missing `init`."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        raise DeployError(f"no deploy state in {state_dir}: run `init` first")
    return dict(json.loads(path.read_text()))


def save_state(state_dir: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the state atomically (a crash never leaves half a file)."""
    path = Path(state_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(state, indent=2))
    os.replace(path.with_suffix(".tmp"), path)


def init(
    state_dir: str | os.PathLike[str], *, nginx: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """Start a fresh state: nginx's paths and URL, and the settings shared by all releases."""
    state = {"nginx": nginx, "env": env, "live": None, "previous": None, "history": []}
    save_state(state_dir, state)
    return state


def _switch(nginx: dict[str, Any], upstream: Instance) -> None:
    """Point nginx's upstream at `upstream`: render, `nginx -t`, reload; restore on failure."""
    app_conf = Path(nginx["app_conf"])
    old = app_conf.read_text() if app_conf.is_file() else None
    app_conf.write_text(render_app_conf([f"127.0.0.1:{upstream.port}"], **nginx["values"]))
    ok, output = nginx_run(nginx, "-t")
    if not ok:
        if old is not None:
            app_conf.write_text(old)
        raise DeployError(f"nginx rejected the new config (nothing switched):\n{output}")
    log.info("nginx -t: config for upstream 127.0.0.1:%d is valid", upstream.port)
    ok, output = nginx_run(nginx, "-s", "reload")
    if not ok:
        if old is not None:
            app_conf.write_text(old)
        raise DeployError(f"nginx -s reload failed:\n{output}")
    log.info("nginx reloaded: new workers send to %s", upstream.instance_id)


def _confirm(nginx: dict[str, Any], green: Instance, *, needed: int, timeout: float) -> None:
    """Wait until `needed` requests in a row through nginx were answered by green."""
    context = ssl.create_default_context(cafile=nginx["cafile"]) if nginx.get("cafile") else None
    streak, deadline, seen = 0, time.monotonic() + timeout, "nothing"
    while streak < needed:
        if time.monotonic() > deadline:
            raise DeployError(f"nginx did not send to {green.instance_id} in {timeout:g}s: {seen}")
        try:
            _body, headers = get_json(f"{nginx['url']}/version", context=context)
            seen = headers.get("X-Instance", "no X-Instance header")
        except OSError as error:
            seen = str(error)
        streak = streak + 1 if seen == green.instance_id else 0
        time.sleep(0.05 if streak else 0.1)
    log.info("confirmed through nginx: %d requests in a row answered by %s", needed, seen)


def _abort(green: Instance, reason: str) -> DeployError:
    log.error("ABORT: %s", reason)
    log.info(
        "stopping green %s on port %d: %s", green.instance_id, green.port, stop_instance(green.pid)
    )
    return DeployError(f"{reason}\nThe live release was left serving; {green.release} was stopped.")


def _start_checked(
    state: dict[str, Any], release: Path, expect: str, timeout: float, state_dir: Path
) -> Instance:
    """Start the release on a new port; ready and the expected version, or abort."""
    green = start_instance(
        release, port=free_port(), env=state["env"], log_dir=Path(state_dir) / "logs"
    )
    log.info(
        "started %s on port %d (pid %d, log %s)", green.release, green.port, green.pid, green.log
    )
    if problem := wait_ready(green, timeout=timeout):
        raise _abort(green, f"{green.release} is not ready: {problem}")
    log.info("%s is ready (/ready answered 200)", green.release)
    version = get_json(f"{green.url}/version")[0].get("version")
    if version != expect:
        raise _abort(green, f"{green.release} reports version {version!r}, expected {expect!r}")
    log.info("%s reports version %s, as expected", green.release, version)
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
    """Blue-green: green on a new port, checked, switched to, confirmed; then blue stops."""
    state_dir, release = Path(state_dir), Path(release)
    state = load_state(state_dir)
    blue = Instance(**state["live"]) if state["live"] else None
    log.info("deploy %s (expect %s); live: %s", release.name, expect_version, blue and blue.release)
    green = _start_checked(state, release, expect_version, ready_timeout, state_dir)
    try:
        _switch(state["nginx"], green)
    except DeployError as error:
        raise _abort(green, str(error)) from None
    try:
        _confirm(state["nginx"], green, needed=confirm, timeout=10.0)
    except DeployError as error:
        if blue is not None:
            _switch(state["nginx"], blue)
        raise _abort(green, str(error)) from None
    if blue is not None:
        previous = {"release": blue.release, "path": blue.path, "version": blue_version(state)}
        state["previous"] = previous
    state["live"] = green.as_dict()
    state["history"].append(
        {"time": time.time(), "release": green.release, "version": expect_version}
    )
    save_state(state_dir, state)  # from here on green is live, whatever happens to blue
    if blue is not None:
        log.info("draining and stopping blue %s (port %d)", blue.release, blue.port)
        log.info("blue %s: %s", blue.release, stop_instance(blue.pid, timeout=stop_timeout))
    log.info("done: %s (%s) is live on port %d", green.release, expect_version, green.port)
    return green


def blue_version(state: dict[str, Any]) -> str | None:
    """The version the live release was deployed as (from the history)."""
    history = [h for h in state["history"] if h["release"] == state["live"]["release"]]
    return history[-1]["version"] if history else None


def rollback(state_dir: str | os.PathLike[str], **options: Any) -> Instance:
    """Deploy the previous release again, with every check of a deploy."""
    state = load_state(state_dir)
    previous = state.get("previous")
    if not previous:
        raise DeployError("nothing to roll back to: only one release was ever live")
    log.info("rollback to %s (%s)", previous["release"], previous["version"])
    return deploy(state_dir, previous["path"], expect_version=previous["version"], **options)


def status(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What is live (and whether it answers), what a rollback would restore."""
    state = load_state(state_dir)
    live = state["live"]
    report: dict[str, Any] = {"live": None, "previous": state["previous"]}
    if live:
        instance = Instance(**live)
        running = alive(instance.pid)
        version = get_json(f"{instance.url}/version")[0].get("version") if running else None
        report["live"] = {**live, "running": running, "version": version}
    return report


def stop(state_dir: str | os.PathLike[str], *, timeout: float = 15.0) -> str:
    """Stop the live instance (nginx then has nothing to send to)."""
    state = load_state(state_dir)
    if not state["live"]:
        return "nothing live"
    instance = Instance(**state["live"])
    outcome = stop_instance(instance.pid, timeout=timeout)
    state["live"] = None
    save_state(state_dir, state)
    return f"{instance.release}: {outcome}"
