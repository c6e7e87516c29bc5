"""Fixtures for the deploy tool: three stamped releases and a real nginx, built once."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opslab.build import build_app_wheel
from opslab.caps import check, strict_mode
from opslab.proxy import AppProxy
from sample_app.deploy import install_release
from sample_app.deploy.tool import load_state, stop

BROKEN_ENV = {"APP_ENV": "production", "CSRF_SECRET": "change-me"}


def write_env_file(path: Path, **values: str) -> Path:
    """A KEY=VALUE file only its owner can read, as an operator keeps one."""
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def production_env(data_dir: Path) -> dict[str, str]:
    """What every release gets: production, real secrets, its own data directory."""
    return {
        "APP_ENV": "production",
        "DATA_DIR": str(data_dir),
        "CSRF_SECRET": secrets.token_urlsafe(32),
    }


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1, v2 and a v3 whose settings make the app refuse to start (placeholder secrets)."""
    root = tmp_path_factory.mktemp("releases")
    made = {}
    for name, version in (("v1", "1.0.0"), ("v2", "2.0.0"), ("v3", "3.0.0")):
        wheel = build_app_wheel(root / "wheels" / name, version=version)
        env = BROKEN_ENV if name == "v3" else None
        made[name] = install_release(wheel, root / "installed", name, env=env)
    return made


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProxy]:
    """nginx with a separate app.conf the deploy tool rewrites (no app behind it yet)."""
    capability = check("nginx")
    if not capability.available:
        if strict_mode():
            pytest.fail(f"nginx is missing and OPSLAB_STRICT is set:\n{capability.install_hint}")
        pytest.skip("nginx is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLAB_STATE_DIR", str(tmp_path_factory.mktemp("opslab")))
        with AppProxy(["127.0.0.1:9"], name="t-deploy", app_conf_file=True) as started:
            yield started


@pytest.fixture
def nginx_settings(proxy: AppProxy, tmp_path: Path) -> Path:
    """The JSON file `init --nginx` reads, for the shared nginx."""
    settings = tmp_path / "nginx.json"
    settings.write_text(json.dumps(proxy.deploy_settings()))
    return settings


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    return write_env_file(tmp_path / "app.env", **production_env(tmp_path))


@pytest.fixture
def state_dir(nginx_settings: Path, env_file: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh deploy state over the shared nginx; whatever is live is stopped afterwards."""
    path = tmp_path / "state"
    done = _deploy_cli(path, "init", "--nginx", str(nginx_settings), "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    yield path
    if load_state(path)["live"]:
        stop(path)


@pytest.fixture
def deploy_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the deploy CLI: deploy_cli(state_dir, "deploy", ...)."""
    return _deploy_cli


def _deploy_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m sample_app.deploy --state-dir STATE ARGS`, as an operator runs it."""
    cmd = [sys.executable, "-m", "sample_app.deploy", "--state-dir", str(state_dir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def answers(proxy: AppProxy, requests: int = 4) -> set[str]:
    """The releases (X-Instance 'v2@token' -> 'v2') that answered GETs through nginx."""
    with proxy.client() as client:
        return {client.get("/version").headers["x-instance"].split("@")[0] for _ in range(requests)}


def deploy_release(
    cli: Callable[..., subprocess.CompletedProcess[str]], state: Path, release: Path, version: str
) -> subprocess.CompletedProcess[str]:
    """`deploy --release RELEASE --expect-version VERSION` through the CLI."""
    return cli(state, "deploy", "--release", str(release), "--expect-version", version)
