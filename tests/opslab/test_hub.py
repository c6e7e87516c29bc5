"""The hub's parts without a hub: roster, config, links, cgroups (the hub itself: tests/book)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from traitlets.config import Config

from opslab import hub, hub_capacity, hub_classes, hub_learners, pidfiles, registry


def test_password_matches_only_its_own_password() -> None:
    entry = hub_classes.hash_password("correct horse")
    assert hub_classes.password_matches("correct horse", entry)
    assert not hub_classes.password_matches("correct horsE", entry)
    assert not hub_classes.password_matches("correct horse", "scrypt$zz$zz")
    assert entry != hub_classes.hash_password("correct horse")  # salted


def test_password_too_long_is_refused_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = hub_classes.hash_password("short")

    def no_hashing(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("scrypt ran on an oversized password")

    monkeypatch.setattr(hub_classes.hashlib, "scrypt", no_hashing)
    assert not hub_classes.password_matches("x" * (hub_classes.MAX_PASSWORD + 1), entry)


def test_add_learners_writes_a_private_roster(tmp_path: Path) -> None:
    passwords = hub_learners.add_learners(["ada", "bo-2"], tmp_path)
    roster = tmp_path / "roster.json"
    assert stat.S_IMODE(roster.stat().st_mode) == 0o600
    entries = json.loads(roster.read_text())
    assert set(entries) == {"ada", "bo-2"}
    assert passwords["ada"] not in roster.read_text()
    assert hub_classes.password_matches(passwords["ada"], entries["ada"])


@pytest.mark.parametrize("name", ["Ada", "root;rm", "-x", "a" * 33, "../etc", ""])
def test_add_learners_refuses_names_that_are_not_user_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a Unix user name"):
        hub_learners.add_learners([name], tmp_path)
    assert not (tmp_path / "roster.json").exists()


def _authenticator(roster: Path) -> hub_classes.RosterAuthenticator:
    config = Config()
    config.RosterAuthenticator.roster_file = str(roster)
    return hub_classes.RosterAuthenticator(config=config)


def test_roster_authenticator_accepts_the_roster_only(tmp_path: Path) -> None:
    passwords = hub_learners.add_learners(["ada"], tmp_path)
    auth = _authenticator(tmp_path / "roster.json")
    login = {"username": "ada", "password": passwords["ada"]}
    assert asyncio.run(auth.authenticate(None, login)) == "ada"
    assert asyncio.run(auth.authenticate(None, {**login, "password": "guess"})) is None
    assert asyncio.run(auth.authenticate(None, {**login, "username": "eve"})) is None
    assert auth.check_allowed("ada")
    assert not auth.check_allowed("eve")


def test_roster_authenticator_refuses_a_roster_others_can_read(tmp_path: Path) -> None:
    hub_learners.add_learners(["ada"], tmp_path)
    roster = tmp_path / "roster.json"
    roster.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        asyncio.run(_authenticator(roster).authenticate(None, {"username": "ada"}))


def test_pull_link_clones_into_the_course_folder_and_opens_the_notebook() -> None:
    link = urlsplit(
        hub.pull_link("http://127.0.0.1:9/", "/opt/x/course.git", "04-configuration.ipynb")
    )
    assert link.path == "/hub/user-redirect/git-pull"
    query = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert query["repo"] == "/opt/x/course.git"
    assert query["targetpath"] == "ops-lab"
    assert query["urlpath"] == "lab/tree/ops-lab/notebooks/04-configuration.ipynb"


def test_exposed_answers_sees_a_folder_others_can_enter() -> None:
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp itself: every folder above is open
    registry.track_temp_dir(tmp_path)
    tmp_path.chmod(0o755)
    (tmp_path / "solutions").mkdir(mode=0o755)
    assert hub.exposed_answers(tmp_path) == [tmp_path / "solutions"]
    tmp_path.chmod(0o750)  # closing any folder above is enough
    assert hub.exposed_answers(tmp_path) == []


def test_write_config_is_a_private_config_jupyterhub_can_load(tmp_path: Path) -> None:
    python, chp = tmp_path / "venv" / "bin" / "python", tmp_path / "chp"
    path = hub.write_config(tmp_path, port=8123, python=python, chp=chp, server_args=["--x"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c})
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert c.Spawner.cmd == [str(python.parent / "jupyterhub-singleuser")]
    assert c.Spawner.env_keep == ["LANG", "LC_ALL"]  # not the hub's PYTHONPATH or OPSLAB_*
    assert c.Spawner.environment["OPSLAB_MISSING_TOOLS"] == hub.MISSING_ON_HUB
    assert "HOME_MODE=0700" in c.LocalAuthenticator.add_user_cmd
    ports = {8123, int(c.ConfigurableHTTPProxy.api_url.rsplit(":", 1)[1]), c.JupyterHub.hub_port}
    assert len(ports) == 3


def test_namespace_cmd_drops_to_the_learner_for_good() -> None:
    cmd = hub_classes.namespace_cmd(1234, 1235)
    assert cmd[:2] == ["unshare", "--pid"]
    assert "tini" in cmd
    script = cmd[cmd.index("-c") + 1]
    assert "--reuid=1234 --regid=1235" in script
    assert "--no-new-privs" in script


def test_cgroup_dirs_follow_the_hierarchy(tmp_path: Path) -> None:
    assert set(hub_classes.cgroup_dirs("ada", tmp_path)) == {"memory", "cpu", "cpuacct", "pids"}
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert hub_classes.cgroup_dirs("ada", tmp_path) == {
        "unified": tmp_path / hub_classes.CGROUP_NAME / "ada"
    }


@pytest.mark.skipif(os.getuid() != 0, reason="cgroups are created by root")
def test_kill_all_stops_a_process_that_escaped_its_session() -> None:
    name = f"test-{secrets.token_hex(3)}"
    dirs = hub_classes.make_cgroups(name, 256 * 2**20, 0.5, 64)
    try:
        # The attacker: a daemon that leaves its session and process group (double fork).
        script = "import os,time\nif os.fork(): os._exit(0)\nos.setsid()\ntime.sleep(300)"
        hook = hub_classes.join_hook(dirs, lambda: None)
        subprocess.run(["python3", "-c", script], preexec_fn=hook, check=True)
        deadline = time.monotonic() + 5
        while not hub_classes.members(dirs) and time.monotonic() < deadline:
            time.sleep(0.05)
        escaped = hub_classes.members(dirs)
        assert escaped, "the daemon is in the learner's cgroup"
        assert hub_classes.usage(dirs)["peak_mb"] > 0
        assert hub_classes.kill_all(dirs) >= escaped
        assert not any(pidfiles.pid_running(pid) for pid in escaped)
        assert not any(path.exists() for path in dirs.values())
    finally:
        hub_classes.kill_all(dirs)


def test_the_proxy_dies_with_a_hub_that_is_killed() -> None:
    """JupyterHub starts the proxy in a session of its own: killing the hub (SIGKILL, so no
    cleanup runs) must still take the proxy down, or it keeps the class's port."""
    hub_like = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-m', 'opslab.hub', 'proxy-exec', '/bin/sleep',"
        " '300'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    hub_cmd = [sys.executable, "-c", hub_like]
    with subprocess.Popen(hub_cmd, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        proxy = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not _runs(proxy, "/bin/sleep") and time.monotonic() < deadline:
            time.sleep(0.05)  # until it has exec'd: the hook is set by then
        assert _runs(proxy, "/bin/sleep"), "the proxy command never started"
        parent.kill()
    deadline = time.monotonic() + 10
    while pidfiles.pid_running(proxy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pidfiles.pid_running(proxy)


def _runs(pid: int, program: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == program.encode()
    except OSError:
        return False


def _level(k: int, walls: list[float], passed: bool = True) -> dict:
    runs = [
        {"learner": f"l{i}", "wall_s": w, "passed": passed, "peak_mb": 500.0 + i,
         "cpu_s": w / 2, "peak_cores": 1.0}
        for i, w in enumerate(walls)
    ]  # fmt: skip
    return {"learners": k, "ok": passed and max(walls) <= 60, "runs": runs}


def test_capacity_holds_the_largest_level_that_met_the_bound() -> None:
    levels = [_level(1, [20.0]), _level(2, [31.0, 33.0]), _level(3, [58.0, 61.5, 60.2])]
    result = hub_capacity.summarize("05-metrics.ipynb", 60.0, levels)
    assert result["holds"] == 2
    assert result["tried"] == 3
    assert result["per_learner"] == {"peak_mb": 500.0, "mean_cores": 0.5, "peak_cores": 1.0}
    rows = hub_capacity.table(result).splitlines()[2:]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "2", "3"]
    assert "61.5" in rows[2]


def test_capacity_of_several_sections_is_set_by_the_heaviest() -> None:
    light = hub_capacity.summarize("05", 60.0, [_level(1, [40.0]), _level(2, [50.0])])
    heavy = hub_capacity.summarize("07", 60.0, [_level(1, [55.0]), _level(2, [62.0])])
    heavy["per_learner"]["peak_mb"] = 400.0  # the light one needs more memory
    both = hub_capacity.combine([light, heavy])
    assert both["holds"] == 1
    assert both["per_learner"]["peak_mb"] == 500.0
    assert both["per_learner"]["mean_cores"] == 0.5
    assert len(hub_capacity.table(both).splitlines()) == 2 + 4


def _in_cgroups(dirs: dict[str, Path], script: str) -> subprocess.CompletedProcess:
    hook = hub_classes.join_hook(dirs, lambda: None)
    return subprocess.run(
        [sys.executable, "-c", script], preexec_fn=hook, capture_output=True, timeout=60
    )


@pytest.mark.skipif(os.getuid() != 0, reason="cgroups are created by root")
def test_a_learner_who_allocates_past_the_memory_limit_is_killed_alone() -> None:
    limit = 128 * 2**20
    dirs = hub_classes.make_cgroups(f"test-{secrets.token_hex(3)}", limit, 1.0, 64)
    try:
        # The attacker touches four times the limit, a page at a time.
        bomb = f"b = bytearray({4 * limit})\nfor i in range(0, len(b), 4096): b[i] = 1"
        done = _in_cgroups(dirs, bomb)
        assert done.returncode == -signal.SIGKILL, done.stderr  # the OOM killer, in its cgroup
        assert hub_classes.usage(dirs)["peak_mb"] <= limit / 2**20
    finally:
        hub_classes.kill_all(dirs)


@pytest.mark.skipif(os.getuid() != 0, reason="cgroups are created by root")
def test_a_fork_bomb_stops_at_the_process_limit() -> None:
    max_pids = 16
    dirs = hub_classes.make_cgroups(f"test-{secrets.token_hex(3)}", 256 * 2**20, 1.0, max_pids)
    try:
        bomb = (
            "import os, time\nborn = 0\n"
            "for _ in range(200):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        os.close(1)\n        os.close(2)\n"
            "        time.sleep(60)\n        os._exit(0)\n"
            "    born += 1\n"
            "print(born)\n"
        )
        done = _in_cgroups(dirs, bomb)
        born = int(done.stdout.split()[-1])
        assert born < max_pids  # the bomb itself counts as one
        assert len(hub_classes.members(dirs)) <= max_pids
    finally:
        hub_classes.kill_all(dirs)
