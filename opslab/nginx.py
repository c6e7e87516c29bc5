"""nginx as a child process on a loopback port, with every file it writes in a private prefix.

`daemon off;` keeps the master our child, so the process registry stops it like any other
server. Configs are validated with `nginx -t` before they are used: a broken reload keeps
the old config serving and raises with nginx's own message.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Self

import jinja2

from opslab import pidfiles
from opslab.caps import BROTLI_MODULE, MissingCapability, find_binary, install_hint, tool_version
from opslab.procs import ManagedProcess, ProcessError, free_port
from opslab.sandbox import confine

log = logging.getLogger(__name__)

# Debian/Ubuntu, then Homebrew (Apple silicon, Intel).
MIME_TYPES = (
    "/etc/nginx/mime.types",
    "/opt/homebrew/etc/nginx/mime.types",
    "/usr/local/etc/nginx/mime.types",
)
EARLY_ERROR_LOG_FLAG = (1, 19, 5)  # `nginx -e FILE` exists from this version on
MAIN_TEMPLATE = """\
# Written by opslab: a standalone nginx that keeps every file it writes in its prefix.
{% for module in modules %}load_module {{ module }};
{% endfor -%}
{% if user %}user {{ user }};  # the master runs as root: keep the workers as this user
{% endif -%}
worker_processes {{ worker_processes }};
# Each proxied connection uses two descriptors (client and upstream), plus files served.
worker_rlimit_nofile 1024;
pid {{ prefix }}/nginx.pid;
error_log {{ prefix }}/logs/error.log {{ error_log_level }};

events {
    worker_connections 512;
}

http {
{%- if mime_types %}
    include {{ mime_types }};
{%- endif %}
    default_type application/octet-stream;
    access_log {{ prefix }}/logs/access.log;
    client_body_temp_path {{ prefix }}/temp/client_body;
    proxy_temp_path {{ prefix }}/temp/proxy;
    fastcgi_temp_path {{ prefix }}/temp/fastcgi;
    uwsgi_temp_path {{ prefix }}/temp/uwsgi;
    scgi_temp_path {{ prefix }}/temp/scgi;

{{ http | indent(4, first=True) }}
}
"""


class NginxConfigError(ProcessError):
    """nginx rejected a configuration (the message is nginx's own)."""


def render(template: str, /, **values: object) -> str:
    """Render a Jinja2 template; a value the template uses but is not given is an error."""
    env = jinja2.Environment(  # autoescape off: these are nginx configs, not HTML
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    return env.from_string(template).render(**values)


def nginx_version(binary: str | None = None) -> str | None:
    """The installed nginx version, e.g. '1.22.1'; None without nginx."""
    binary = binary or find_binary("nginx")
    return tool_version([binary, "-v"]) if binary else None


def brotli_module_path() -> Path | None:
    """The dynamic Brotli filter module (Debian: libnginx-mod-http-brotli-filter), if present."""
    return BROTLI_MODULE if BROTLI_MODULE.is_file() else None


def _worker_user() -> str | None:
    """`user` for a root master: ourselves, so workers can use the private prefix."""
    if os.geteuid() != 0:
        return None  # nginx ignores `user` (with a warning) when not started as root
    return f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"


def _retiring(pid: int) -> bool:
    """Whether an nginx worker is shutting down (it renames itself, then stops accepting)."""
    try:
        title = (pidfiles.PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return True  # already gone
    return b"shutting down" in title


class Nginx(ManagedProcess):
    """One nginx master (plus workers) with a private prefix directory and a free port."""

    stop_signal: ClassVar[int] = signal.SIGQUIT  # graceful: finish in-flight requests

    def __init__(
        self, *, name: str = "nginx", port: int | None = None, binary: str | None = None
    ) -> None:
        binary = binary or find_binary("nginx")
        if binary is None:
            raise MissingCapability(f"nginx is not installed.\n{install_hint('nginx')}")
        super().__init__([binary], name=name)
        self.binary = binary
        self.port = port or free_port()
        self.prefix = self.workdir
        for sub in ("logs", "temp"):
            (self.prefix / sub).mkdir(exist_ok=True)
        self.conf_path = self.prefix / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.access_log = self.prefix / "logs" / "access.log"
        # -e: errors from before the config is read go here, not to /var/log/nginx.
        version = tuple(int(part) for part in re.findall(r"\d+", nginx_version(binary) or "0"))
        self._early_log = ["-e", str(self.error_log)] if version >= EARLY_ERROR_LOG_FLAG else []
        self.cmd = [*self._base_cmd(self.conf_path), "-g", "daemon off;"]
        # When a submission is graded its config is learner input: nginx runs as its user.
        confine.hand_over(self.prefix)

    def _base_cmd(self, conf: Path) -> list[str]:
        return confine.wrap(
            [self.binary, "-p", f"{self.prefix}/", "-c", str(conf), *self._early_log]
        )

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    def config(
        self,
        http: str,
        *,
        modules: Sequence[str | os.PathLike[str]] = (),
        worker_processes: int = 1,
        error_log_level: str = "notice",
        **values: object,
    ) -> str:
        """A complete nginx.conf around `http` (a template given port, prefix and `values`)."""
        body = render(http, port=self.port, prefix=self.prefix, **values).strip("\n")
        return render(
            MAIN_TEMPLATE,
            http=body,
            modules=[os.fspath(m) for m in modules],
            user=_worker_user(),
            worker_processes=worker_processes,
            prefix=self.prefix,
            error_log_level=error_log_level,
            mime_types=next((path for path in MIME_TYPES if Path(path).is_file()), None),
        )

    def test(self, conf: str | None = None) -> tuple[bool, str]:
        """Run `nginx -t` on `conf` (default: the current file); (ok, nginx's output)."""
        path = self.conf_path
        if conf is not None:
            path = self.prefix / "candidate.conf"
            path.write_text(conf)
        cmd = [*self._base_cmd(path), "-t", "-g", "daemon off;"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def _install(self, conf: str) -> None:
        """Validate `conf` and make it the current config file, or raise with nginx's message."""
        ok, output = self.test(conf)
        if not ok:
            raise NginxConfigError(f"nginx rejected the config:\n{output}")
        os.replace(self.prefix / "candidate.conf", self.conf_path)

    def start(self, conf: str | None = None, *, timeout: float = 10.0) -> Self:
        """Validate and write `conf` (if given), start nginx and wait until it is listening."""
        if conf is not None:
            self._install(conf)
        elif not self.conf_path.is_file():
            raise ValueError("no config yet: pass one, e.g. nginx.start(nginx.config(...))")
        (self.prefix / "nginx.pid").unlink(missing_ok=True)
        return super().start(timeout=timeout)

    def ready(self, timeout: float) -> None:
        """nginx writes its pid file after it has opened every listening socket."""
        pid_file, deadline = self.prefix / "nginx.pid", time.monotonic() + timeout
        while not (pid_file.is_file() and pid_file.read_text().strip() == str(self.pid)):
            if not self.running:
                raise self._failure(f"nginx exited with {self.returncode} during startup")
            if time.monotonic() >= deadline:
                raise self._failure(f"nginx did not start within {timeout:g}s")
            time.sleep(0.05)

    def workers(self) -> list[int]:
        """The pids of the worker (and cache) processes, without the master."""
        return [pid for pid in pidfiles.group_members(self.pid or 0) if pid != self.pid]

    def _reloaded(self, old_workers: set[int]) -> bool:
        """New workers run, and every old one has stopped accepting (it is retitled first)."""
        current = set(self.workers())
        if not current - old_workers:
            return False
        return all(_retiring(pid) for pid in current & old_workers)

    def reload(self, conf: str, *, timeout: float = 10.0) -> None:
        """Switch to `conf` without dropping connections; a rejected config keeps the old one."""
        old_conf = self.conf_path.read_text()
        self._install(conf)
        before = set(self.workers())
        self.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not self._reloaded(before):
            if time.monotonic() >= deadline:
                self.conf_path.write_text(old_conf)
                raise NginxConfigError(
                    f"nginx did not start new workers within {timeout:g}s; error log:\n"
                    + "\n".join(self.error_log_text().splitlines()[-10:])
                )
            time.sleep(0.05)
        log.info("nginx %s reloaded (workers %s)", self.name, sorted(self.workers()))

    def error_log_text(self) -> str:
        """nginx's error log (level notice: it also records reloads)."""
        return self.error_log.read_text(errors="replace") if self.error_log.is_file() else ""

    def access_log_text(self) -> str:
        """nginx's access log."""
        return self.access_log.read_text(errors="replace") if self.access_log.is_file() else ""
