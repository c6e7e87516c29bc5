"""The deploy tool against real app processes and a real nginx."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from opslab.proxy import AppProxy
from sample_app.deploy import (
    render_app_conf,
    running_from,
    start_instance,
    stop_all,
    stop_instance,
    wait_ready,
)
from sample_app.deploy.instances import Instance, alive
from sample_app.deploy.tool import load_state

from .conftest import answers, deploy_release

pytestmark = pytest.mark.slow
Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_render_app_conf_points_the_upstream_at_the_given_servers() -> None:
    values = {"port": 1, "https_port": 2, "certificate": "c", "certificate_key": "k"}
    values |= {"static_root": "/s", "log_dir": "/l", "brotli": False}

    conf = render_app_conf(["127.0.0.1:8123"], **values)

    assert "server 127.0.0.1:8123 max_fails=1" in conf
    assert "brotli on" not in conf


def test_deploy_switches_nginx_to_green_and_stops_blue(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path], proxy: AppProxy
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    blue = load_state(state_dir)["live"]

    done = deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0")

    assert done.returncode == 0, done.stderr
    assert answers(proxy) == {"v2"}
    assert not alive(Instance(**blue))
    assert load_state(state_dir)["previous"]["version"] == "1.0.0"
    assert "confirmed through nginx" in done.stderr


def test_deploy_of_a_release_that_never_gets_ready_is_rejected_and_blue_keeps_serving(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path], proxy: AppProxy
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0").returncode == 0
    blue = load_state(state_dir)["live"]

    done = deploy_release(deploy_cli, state_dir, releases["v3"], "3.0.0")

    assert done.returncode == 1
    assert "v3 is not ready: exited before it was ready" in done.stderr
    assert "placeholder" in done.stderr  # the app's own reason, from its log
    assert load_state(state_dir)["live"] == blue
    assert answers(proxy) == {"v2"}


def test_deploy_with_an_unexpected_version_is_rejected_and_green_stopped(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path], proxy: AppProxy
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0

    done = deploy_release(deploy_cli, state_dir, releases["v2"], "2.1.0")

    assert done.returncode == 1
    assert "reports version '2.0.0', expected '2.1.0'" in done.stderr
    assert "stopping green v2" in done.stderr
    assert answers(proxy) == {"v1"}


def test_init_with_an_invalid_nginx_config_changes_nothing(
    deploy_cli: Cli,
    state_dir: Path,
    nginx_settings: Path,
    releases: dict[str, Path],
    proxy: AppProxy,
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    assert deploy_cli(state_dir, "stop").returncode == 0
    app_conf = Path(load_state(state_dir)["nginx"]["app_conf"]).read_text()
    settings = json.loads(nginx_settings.read_text())
    settings["values"]["api_rate"] = "lots"  # not a rate: nginx -t refuses it
    nginx_settings.write_text(json.dumps(settings))

    done = deploy_cli(state_dir, "init", "--nginx", str(nginx_settings))

    assert done.returncode == 1
    assert "nginx -t failed (config left as it was)" in done.stderr
    assert Path(settings["app_conf"]).read_text() == app_conf


def test_rollback_brings_back_the_previous_release(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path], proxy: AppProxy
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    with proxy.client() as client:
        created = client.post("/api/todos", json={"title": "survives deploys"}).json()
    assert deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0").returncode == 0

    done = deploy_cli(state_dir, "rollback")

    assert done.returncode == 0, done.stderr
    assert answers(proxy) == {"v1"}
    with proxy.client() as client:
        assert client.get(f"/api/todos/{created['id']}").status_code == 200
    status = json.loads(deploy_cli(state_dir, "status").stdout)
    assert status["live"]["version"] == "1.0.0"
    assert status["previous"]["version"] == "2.0.0"


def test_rollback_without_a_previous_release_fails_clearly(
    deploy_cli: Cli, state_dir: Path
) -> None:
    done = deploy_cli(state_dir, "rollback")

    assert done.returncode == 1
    assert "nothing to roll back to" in done.stderr
    assert os.path.isfile(state_dir / "state.json")


def test_stop_all_stops_instances_no_state_knows_of(
    releases: dict[str, Path], tmp_path: Path
) -> None:
    sockets = tmp_path / "s"
    sockets.mkdir(mode=0o700)
    env = {"APP_ENV": "development", "DATA_DIR": str(tmp_path)}
    lost = start_instance(releases["v1"], sockets=sockets, env=env, log_dir=tmp_path)
    assert wait_ready(lost, timeout=20) is None
    assert running_from(releases["v1"].parent) == [lost.pid]

    stopped = stop_all(releases["v1"].parent)

    assert stopped == {lost.pid: "stopped (SIGTERM)"}
    assert not alive(lost)


def test_deploy_takes_over_from_an_instance_started_by_hand_on_the_live_socket(
    deploy_cli: Cli, proxy: AppProxy, state_dir: Path, releases: dict[str, Path], tmp_path: Path
) -> None:
    # Section 07's restart in place: v1 stopped, v2 started by hand on live.sock (which no
    # state knows), then a deploy of v2 with the tool.
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    state = load_state(state_dir)
    stop_instance(Instance(**state["live"]))
    live = state_dir / "sockets" / "live.sock"
    by_hand = start_instance(
        releases["v2"], sockets=live.parent, env=state["env"], log_dir=tmp_path, sock=live
    )
    try:
        assert wait_ready(by_hand, timeout=20) is None
        assert answers(proxy) == {"v2"}
        deployed = deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0")
        assert deployed.returncode == 0, deployed.stderr  # was: nginx did not send to v2@...
    finally:
        deploy_cli(state_dir, "stop")
        stop_all(releases["v1"].parent)
    assert not alive(by_hand)
