"""A class on one machine: JupyterHub on loopback, learners as Unix users (`make hub`).

`python -m opslab.hub learners add NAME...` puts learners on the roster (it prints their
passwords once), `python -m opslab.hub serve` starts the hub and `... link --url URL` prints the
nbgitpuller link that clones the learner distribution (no solutions, no grading keys) into a
learner's home. Everything a learner's server runs lives in a venv of the system Python under
/opt/opslab-hub (readable by every learner, unlike a developer's own Python) and in the
learner's cgroups and PID namespace (opslab.hub_classes). No container engine: see
`MISSING_ON_HUB`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from opslab import caps, dist, hub_classes, pidfiles, procs
from opslab.hub_learners import (
    ADD_USER,
    LEARNER_GROUP,
    STATE,
    add_learners,
    collect,
    private_file,
    remove_learners,
)
from opslab.procs import ManagedProcess, free_port

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
HUB_ROOT = Path(os.environ.get("OPSLAB_HUB_ROOT", "/opt/opslab-hub"))
REQUIREMENTS = ROOT / "requirements.txt"
CHP_VERSION = "5.3.0"
# No container engine for learners: an engine shared by a class is root on the machine for
# whoever can reach it, and rootless podman needs newuidmap and subordinate ids. The course
# then says so (opslab.caps.ON_HUB_ENGINE_HINT) and skips only the container cells.
MISSING_ON_HUB = "podman,docker,dockerd"
ANSWERS = ("solutions", "opslab/grading/keys")
SYSTEM_PYTHON = "/usr/bin/python3"


def _run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def _readable_by_all(path: Path) -> None:
    _run(["chmod", "-R", "a+rX,go-w", str(path)])


def python_env(root: Path = HUB_ROOT) -> Path:
    """The learners' Python (a venv of the system Python with the course's requirements),
    rebuilt when requirements.txt changes; returns its interpreter."""
    venv = root / "venv"
    stamp, want = (
        venv / ".opslab-requirements",
        hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
    )
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == want and python.exists():
        return python
    log.info("installing the learners' Python into %s (once per requirements.txt)", venv)
    shutil.rmtree(venv, ignore_errors=True)
    _run([SYSTEM_PYTHON, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)])
    settings = venv / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "binder" / "jupyterlab-overrides.json", settings / "overrides.json")
    _readable_by_all(root)
    stamp.write_text(want)
    return python


def proxy_command(root: Path = HUB_ROOT) -> Path:
    """configurable-http-proxy from npm, pinned, installed once under `root`."""
    prefix = root / "node"
    chp = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        _run(["npm", "install", "--silent", "--no-fund", "--no-audit", "--prefix", str(prefix),
              f"configurable-http-proxy@{CHP_VERSION}"])  # fmt: skip
    return chp


def course_repo(root: Path = HUB_ROOT) -> Path:
    """A bare git repository of the learner distribution that every learner can clone."""
    repo = root / "course.git"
    source = dist.build()
    shutil.rmtree(repo, ignore_errors=True)
    _run(["git", "clone", "--quiet", "--bare", str(source), str(repo)])
    # git refuses a repository another user owns ("dubious ownership") unless a protected
    # config (system or global, not -c) names it: the learners' global config names this one
    # and includes their own ~/.gitconfig.
    gitconfig(root).write_text(f"[safe]\n\tdirectory = {repo}\n[include]\n\tpath = ~/.gitconfig\n")
    _readable_by_all(repo)
    _readable_by_all(gitconfig(root))
    return repo


def gitconfig(root: Path = HUB_ROOT) -> Path:
    """The learners' GIT_CONFIG_GLOBAL (see course_repo)."""
    return root / "gitconfig"


def pull_link(hub_url: str, repo: Path | str, notebook: str = "00-setup.ipynb") -> str:
    """The nbgitpuller link: clone (or update) the course, then open `notebook` in JupyterLab."""
    target = hub_classes.COURSE_DIR
    query = {
        "repo": str(repo),
        "branch": "main",
        "targetpath": target,
        "urlpath": f"lab/tree/{target}/notebooks/{notebook}",
    }
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{urlencode(query)}"


def exposed_answers(root: Path = ROOT) -> list[Path]:
    """The answer folders a learner could read: any of them, or a folder above, open to others."""
    exposed = []
    for name in ANSWERS:
        path = root / name
        chain = [path, *path.parents]
        if path.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in chain if p.exists()):
            exposed.append(path)
    return exposed


def learner_environment(venv_bin: Path) -> dict[str, str]:
    """What the hub sets in every learner's server, besides HOME, USER and PYTHONPATH."""
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        caps.MISSING_TOOLS_VAR: MISSING_ON_HUB,
        caps.ON_HUB_VAR: "1",
        "GIT_CONFIG_GLOBAL": str(gitconfig()),
    }


def write_config(
    state: Path, *, port: int, python: Path, chp: Path, server_args: list[str]
) -> Path:
    """jupyterhub_config.py for a hub on 127.0.0.1:`port`; returns its path."""
    venv_bin = python.parent
    settings = {
        "port": port,
        "api_port": free_port(),
        "hub_port": free_port(),
        "roster": str(state / "roster.json"),
        "cmd": [str(venv_bin / "jupyterhub-singleuser")],
        "args": server_args,
        "proxy": [sys.executable, "-m", "opslab.hub", "proxy-exec", str(chp)],
        "environment": learner_environment(venv_bin),
        "mem_limit": hub_classes.MEM_LIMIT,
        "cpu_limit": hub_classes.CPU_LIMIT,
        "culler": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"],
        "add_user": ADD_USER,
        "state": str(state),
    }
    path = state / "jupyterhub_config.py"
    private_file(path, CONFIG_TEMPLATE.format(settings=repr(settings)))
    return path


CONFIG_TEMPLATE = """# Written by opslab.hub: edit the settings there, not here.
s = {settings}
c.JupyterHub.bind_url = f"http://127.0.0.1:{{s['port']}}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{{s['api_port']}}"
c.ConfigurableHTTPProxy.command = s["proxy"]
c.ConfigurableHTTPProxy.pid_file = s["state"] + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + s["state"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = s["state"] + "/cookie_secret"
c.JupyterHub.authenticator_class = "opslab.hub_classes.RosterAuthenticator"
c.RosterAuthenticator.roster_file = s["roster"]
c.LocalAuthenticator.create_system_users = True
c.LocalAuthenticator.add_user_cmd = s["add_user"]
c.JupyterHub.spawner_class = "opslab.hub_classes.LimitedSpawner"
c.Spawner.cmd = s["cmd"]
c.Spawner.args = s["args"]
c.Spawner.default_url = "/lab"
c.Spawner.mem_limit = s["mem_limit"]
c.Spawner.cpu_limit = s["cpu_limit"]
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.environment = s["environment"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.cleanup_servers = True
c.JupyterHub.load_roles = [{{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}}]
c.JupyterHub.services = [{{"name": "idle-culler", "command": s["culler"]}}]
"""


class Hub(ManagedProcess):
    """`jupyterhub` with the course's config; ready when its API answers."""

    def __init__(self, state: Path, config: Path, port: int) -> None:
        self.port, self.state = port, state
        cmd = [Path(sys.executable).parent / "jupyterhub", "-f", config]
        super().__init__(cmd, name="jupyterhub", cwd=state)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self, timeout: float) -> None:
        self.wait_http(f"{self.url}/hub/api/", timeout=timeout)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop the hub (it stops every learner's server), then the proxy and anything left."""
        code = super().stop(timeout)
        pid_file = self.state / "proxy.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text() or 0)
            if pid and pidfiles.pid_running(pid):
                pidfiles.kill_group(pid)
            pid_file.unlink(missing_ok=True)
        for user in learners_with_cgroups():
            hub_classes.kill_all(hub_classes.cgroup_dirs(user))
        for path in hub_classes.cgroup_dirs("-").values():
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return code


def learners_with_cgroups() -> list[str]:
    """The learners whose cgroups exist (a server of theirs ran, or runs)."""
    names: set[str] = set()
    for path in hub_classes.cgroup_dirs("x").values():
        if path.parent.is_dir():
            names.update(p.name for p in path.parent.iterdir() if p.is_dir())
    return sorted(names)


def prepare(
    state: Path = STATE, *, port: int | None = None, server_args: Sequence[str] = ()
) -> Hub:
    """Everything the hub needs, installed and written; returns it, not yet started."""
    if os.getuid() != 0:
        raise PermissionError("the hub creates Unix users and cgroups: run it as root")
    if exposed := exposed_answers():
        raise PermissionError(
            f"learners could read {', '.join(map(str, exposed))}: chmod o-rx the course folder"
        )
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    _run(["groupadd", "--force", LEARNER_GROUP])
    port = port or free_port()
    python, chp = python_env(), proxy_command()
    course_repo()
    config = write_config(state, port=port, python=python, chp=chp, server_args=list(server_args))
    return Hub(state, config, port)


def proxy_exec(argv: list[str]) -> None:
    """Become the proxy, dying with the hub: JupyterHub starts it in a session of its own,
    so without this a hub that crashes leaves the proxy holding the port."""
    hook = procs._preexec(os.getppid())
    if hook is not None:
        hook()
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    """CLI: learners add, serve, link, proxy-exec (used by the hub itself)."""
    parser = argparse.ArgumentParser(prog="python -m opslab.hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("learners", help="add learners to the roster").add_argument
    add("action", choices=["add", "remove"])
    add("names", nargs="+")
    sub.add_parser("serve", help="start the hub").add_argument("--port", type=int, default=8080)
    sub.add_parser("link", help="the nbgitpuller link").add_argument("--url", required=True)
    sub.add_parser("proxy-exec").add_argument("argv", nargs=argparse.REMAINDER)
    take = sub.add_parser("collect", help="copy the learners' notebooks for `make grade`")
    take.add_argument("assignment", help="e.g. review or checkpoint-03-nginx")
    take.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "proxy-exec":
        proxy_exec(args.argv)
    elif args.command == "learners" and args.action == "remove":
        print("deleted:", " ".join(remove_learners(args.names)) or "nobody")
    elif args.command == "learners":
        for name, password in add_learners(args.names).items():
            print(f"{name}\t{password}")  # shown once: only the hash is kept
    elif args.command == "collect":
        for name, verdict in collect(args.assignment, args.out).items():
            print(f"{name}\t{verdict}")
    elif args.command == "link":
        print(pull_link(args.url, HUB_ROOT / "course.git"))
    elif args.command == "serve":
        hub = prepare(port=args.port).start(timeout=120)
        print(f"hub on {hub.url}; the course link: {pull_link(hub.url, HUB_ROOT / 'course.git')}")
        try:
            hub.wait()
        except KeyboardInterrupt:
            pass
        finally:
            hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
