"""Deploys and rollbacks under load from a client that never retries (wrk): none lost."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from opslab.caps import check, strict_mode
from opslab.proxy import AppProxy
from opslab.wrk import start_wrk, wrk_result

from .conftest import production_env, write_env_file

pytestmark = pytest.mark.slow
Cli = Callable[..., subprocess.CompletedProcess[str]]
UNLIMITED = {"api_rate": "100000r/s", "api_burst": 100000}
UNLIMITED |= {"write_rate": "100000r/s", "write_burst": 100000}


@pytest.fixture
def wrk() -> None:
    capability = check("wrk")
    if not capability.available:
        if strict_mode():
            pytest.fail(f"wrk is missing and OPSLAB_STRICT is set:\n{capability.install_hint}")
        pytest.skip("wrk is not installed")


@pytest.mark.usefixtures("wrk")
@pytest.mark.parametrize("path", ["/", "/api/todos"])
def test_switches_under_keep_alive_load_lose_no_request_gets_or_posts(
    deploy_cli: Cli,
    proxy: AppProxy,
    releases: dict[str, Path],
    nginx_settings: Path,
    tmp_path: Path,
    path: str,
) -> None:
    settings = json.loads(nginx_settings.read_text())
    settings["values"] |= UNLIMITED  # the rate limits would answer 429: not what is measured
    nginx_settings.write_text(json.dumps(settings))
    env = write_env_file(tmp_path / "app.env", **production_env(tmp_path))
    state = tmp_path / "state"
    init = deploy_cli(state, "init", "--nginx", str(nginx_settings), "--env-file", str(env))
    assert init.returncode == 0, init.stderr
    first = ("deploy", "--release", str(releases["v1"]), "--expect-version", "1.0.0")
    assert deploy_cli(state, *first).returncode == 0
    switches = [
        ("deploy", "--release", str(releases["v2"]), "--expect-version", "2.0.0"),
        ("rollback",),
        ("rollback",),
        ("rollback",),
    ]
    load = start_wrk(proxy.https_url, seconds=120, get_path=path)
    try:
        outcomes = [deploy_cli(state, *args) for args in switches]
    finally:
        result = wrk_result(load, stop=True)
        deploy_cli(state, "stop")

    failed = [o.stderr for o in outcomes if o.returncode != 0]
    assert not failed, failed[0]
    assert result.requests > 100 * len(switches)  # the load ran across every switch
    assert (result.socket_errors, result.status) == (0, 0), result
