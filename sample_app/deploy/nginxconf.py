"""The app's nginx template rendered for a deployment, and nginx's own test and reload.

One implementation: the course toolkit renders the same template through this module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

NGINX_DIR = Path(__file__).resolve().parent.parent / "ops" / "nginx"
APP_TEMPLATE = NGINX_DIR / "app.conf.j2"
SNIPPETS = NGINX_DIR / "snippets"
DEFAULTS: dict[str, Any] = {
    "server_name": "localhost",
    "api_rate": "20r/s",
    "api_burst": 20,
    "keepalive": 16,
    "max_fails": 1,
    "fail_timeout": "5s",
    "trusted_proxies": [],
    "extra_locations": "",
}


def render_app_conf(upstreams: Iterable[str], /, **values: object) -> str:
    """The template (the body of `http {}`) for these 'host:port' upstreams.

    `values` override DEFAULTS; a value the template uses but nobody gives is an error.
    """
    env = jinja2.Environment(  # autoescape off: an nginx config, not HTML
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    template = env.from_string(APP_TEMPLATE.read_text())
    return template.render(
        **{**DEFAULTS, "snippets": SNIPPETS, **values, "upstreams": list(upstreams)}
    )


def nginx_cmd(nginx: Mapping[str, Any], *args: str) -> list[str]:
    """`nginx -p PREFIX -c CONF [-e ERROR_LOG] ARGS` for the nginx this state describes."""
    cmd = [nginx.get("binary", "nginx"), "-p", f"{nginx['prefix']}/", "-c", str(nginx["conf"])]
    if nginx.get("error_log"):  # errors before the config is read go here, not /var/log
        cmd += ["-e", str(nginx["error_log"])]
    return [*cmd, *args]


def nginx_run(nginx: Mapping[str, Any], *args: str) -> tuple[bool, str]:
    """Run nginx with `args` (e.g. '-t', or '-s', 'reload'); (ok, what nginx printed)."""
    done = subprocess.run(
        nginx_cmd(nginx, *args), capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()
