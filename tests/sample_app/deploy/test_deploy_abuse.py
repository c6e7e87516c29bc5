"""The deploy tool against what goes wrong on a real server: races, reused PIDs, bad
names, leaked secrets, a broken check, assets nginx does not serve."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opslab.proxy import AppProxy
from sample_app.deploy import install_release, running_from
from sample_app.deploy import tool as deploy_tool
from sample_app.deploy.instances import Instance, alive, start_ticks
from sample_app.deploy.tool import load_state, locked, save_state

from .conftest import answers, deploy_release, write_env_file

pytestmark = pytest.mark.slow
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def bystander(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process group leader (a shell an operator left in a release dir)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=tmp_path)
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_deploy_while_one_runs_is_refused_and_changes_nothing(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path]
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    before = load_state(state_dir)

    with locked(state_dir):  # the first deploy, still running
        done = deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0")

    assert done.returncode == 1
    assert f"another deploy command (pid {os.getpid()}) holds" in done.stderr
    assert load_state(state_dir) == before
    assert running_from(releases["v1"].parent) == [before["live"]["pid"]]


def test_two_deploys_at_once_leave_one_live_instance_and_a_consistent_state(
    state_dir: Path, releases: dict[str, Path], proxy: AppProxy
) -> None:
    cmd = [sys.executable, "-m", "sample_app.deploy", "--state-dir", str(state_dir), "deploy"]
    racers = [
        subprocess.Popen(
            [*cmd, "--release", str(releases[name]), "--expect-version", version],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, version in (("v1", "1.0.0"), ("v2", "2.0.0"))
    ]
    codes = sorted(proc.wait(timeout=90) for proc in racers)
    for proc in racers:
        proc.communicate()

    assert codes == [0, 1]
    live = load_state(state_dir)["live"]
    assert running_from(releases["v1"].parent) == [live["pid"]]
    assert answers(proxy) == {live["release"]}


def test_stop_never_signals_a_reused_pid(
    state_dir: Path, bystander: subprocess.Popen[bytes]
) -> None:
    state = load_state(state_dir)
    ticks = start_ticks(bystander.pid)
    assert ticks is not None
    # As after a reboot: the recorded PID now belongs to a process started at another time.
    state["live"] = Instance(
        "v1", "/gone", "/gone.sock", bystander.pid, ticks - 1, "/l", "v1@x"
    ).as_dict()
    save_state(state_dir, state)

    done = subprocess.run(
        [sys.executable, "-m", "sample_app.deploy", "--state-dir", str(state_dir), "stop"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"PID {bystander.pid} now belongs to another process: left alone" in done.stdout
    assert bystander.poll() is None  # still running: never signalled


def test_stop_all_ignores_a_shell_sitting_in_a_release_directory(
    releases: dict[str, Path],
) -> None:
    shell = subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=releases["v1"])
    try:
        assert shell.pid not in running_from(releases["v1"].parent)
    finally:
        shell.kill()
        shell.wait()


@pytest.mark.parametrize("name", ["", ".", "..", "../escaped", "a/b", "deps", "-rf", "x" * 65])
def test_release_names_that_escape_or_clobber_the_root_are_refused(
    deploy_cli: Cli, releases: dict[str, Path], tmp_path: Path, name: str
) -> None:
    root = releases["v1"].parent
    before = sorted(p.name for p in root.iterdir())
    wheel = next((root.parent / "wheels" / "v1").glob("*.whl"))

    done = deploy_cli(tmp_path / "s", "install", str(wheel), "--into", str(root), "--name", name)

    assert done.returncode in (1, 2), done.stderr  # 2: argparse refuses "-rf" itself
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in root.iterdir()) == before
    assert (releases["v1"] / "release.json").is_file()


def test_installing_over_an_existing_release_is_refused(
    deploy_cli: Cli, releases: dict[str, Path], tmp_path: Path
) -> None:
    root = releases["v2"].parent
    marker = releases["v2"] / "sample_app" / "__init__.py"
    before = marker.stat().st_mtime_ns
    wheel = next((root.parent / "wheels" / "v2").glob("*.whl"))

    done = deploy_cli(tmp_path / "s", "install", str(wheel), "--into", str(root), "--name", "v2")

    assert done.returncode == 1
    assert "release v2 already exists" in done.stderr
    assert marker.stat().st_mtime_ns == before


def test_secrets_are_kept_from_other_users_and_from_ps(
    deploy_cli: Cli, state_dir: Path, env_file: Path, releases: dict[str, Path], tmp_path: Path
) -> None:
    secret = dict(line.split("=", 1) for line in env_file.read_text().split())["CSRF_SECRET"]

    refused = deploy_cli(state_dir, "init", "--nginx", "x.json", "--env", f"CSRF_SECRET={secret}")
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0

    assert refused.returncode == 1
    assert "visible to everyone in `ps`" in refused.stderr
    assert secret not in refused.stderr
    live = load_state(state_dir)["live"]
    for private in (state_dir / "state.json", releases["v1"] / "release.json", Path(live["log"])):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    for directory in (state_dir, state_dir / "sockets"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert secret.encode() not in Path(f"/proc/{live['pid']}/cmdline").read_bytes()


def test_the_operators_environment_does_not_leak_into_the_app(
    state_dir: Path, releases: dict[str, Path]
) -> None:
    cmd = [sys.executable, "-m", "sample_app.deploy", "--state-dir", str(state_dir), "deploy"]
    stray = {**os.environ, "DATABASE_URL": "sqlite:////nonexistent/stray.db", "LOG_LEVEL": "debug"}

    done = subprocess.run(
        [*cmd, "--release", str(releases["v1"]), "--expect-version", "1.0.0"],
        env=stray, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    environ = Path(f"/proc/{load_state(state_dir)['live']['pid']}/environ").read_bytes()
    names = {item.split(b"=", 1)[0] for item in environ.split(b"\0") if item}
    assert b"DATABASE_URL" not in names
    assert b"LOG_LEVEL" not in names
    assert b"APP_ENV" in names


def test_a_release_without_app_env_is_not_started(
    deploy_cli: Cli, nginx_settings: Path, releases: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "bare"
    data = write_env_file(tmp_path / "data.env", DATA_DIR=str(tmp_path))
    assert (
        deploy_cli(
            state, "init", "--nginx", str(nginx_settings), "--env-file", str(data)
        ).returncode
        == 0
    )

    done = deploy_release(deploy_cli, state, releases["v1"], "1.0.0")

    assert done.returncode == 1
    assert "APP_ENV is not set for v1" in done.stderr
    assert running_from(releases["v1"].parent) == []


def test_a_failing_version_check_stops_green_and_keeps_blue(
    state_dir: Path, releases: dict[str, Path], proxy: AppProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_tool.deploy(state_dir, releases["v1"], expect_version="1.0.0")
    blue = load_state(state_dir)["live"]

    def broken(_sock: str, _path: str) -> dict[str, str]:
        raise ConnectionResetError("the check's connection was reset")

    monkeypatch.setattr(deploy_tool, "get_json", broken)
    with pytest.raises(deploy_tool.DeployError, match="connection was reset"):
        deploy_tool.deploy(state_dir, releases["v2"], expect_version="2.0.0")

    assert load_state(state_dir)["live"] == blue
    assert running_from(releases["v1"].parent) == [blue["pid"]]
    assert answers(proxy) == {"v1"}


def test_a_release_gets_its_own_assets_served_and_checked(
    deploy_cli: Cli, state_dir: Path, env_file: Path, releases: dict[str, Path], proxy: AppProxy,
    tmp_path: Path,
) -> None:  # fmt: skip
    root = releases["v1"].parent
    wheel = next((root.parent / "wheels" / "v2").glob("*.whl"))
    name = f"v2-css-{os.getpid()}-{time.monotonic_ns()}"
    new = install_release(wheel, root, name)
    css = new / "sample_app" / "static" / "css" / "app.css"
    css.write_text(css.read_text() + f"\n/* {name} */\n")  # the release changed its CSS
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0

    assert deploy_release(deploy_cli, state_dir, new, "2.0.0").returncode == 0

    with proxy.client() as client:
        served = client.get("/static/css/app.css")
    assert served.status_code == 200
    assert name in served.text


def test_a_deploy_whose_assets_nginx_does_not_serve_is_aborted(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path], proxy: AppProxy, tmp_path: Path
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    state = load_state(state_dir)
    state["nginx"]["values"]["static_root"] = str(tmp_path / "not-served")  # a wrong path
    save_state(state_dir, state)
    js = releases["v2"] / "sample_app" / "static" / "js"
    changed = js / "app.js"
    original = changed.read_bytes()
    try:
        changed.write_bytes(original + b"\n// changed\n")
        done = deploy_release(deploy_cli, state_dir, releases["v2"], "2.0.0")
    finally:
        changed.write_bytes(original)

    assert done.returncode == 1
    assert "nginx does not serve the release's /static/js/app.js" in done.stderr
    assert answers(proxy) == {"v1"}
    assert alive(Instance(**load_state(state_dir)["live"]))


def test_status_reports_the_live_release(
    deploy_cli: Cli, state_dir: Path, releases: dict[str, Path]
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0

    report = json.loads(deploy_cli(state_dir, "status").stdout)

    assert report["live"]["running"] is True
    assert report["live"]["version"] == "1.0.0"
