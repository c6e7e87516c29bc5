"""The app's nginx template (sample_app/ops/nginx): renders, and agrees with the app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opslab.caps import check, strict_mode
from opslab.nginx import MAIN_TEMPLATE, Nginx, render
from opslab.proxy import APP_TEMPLATE, DEFAULTS, SNIPPETS, make_self_signed_cert
from sample_app.config import Settings
from sample_app.security import HSTS, security_headers

VALUES = {
    **DEFAULTS,
    "upstreams": ["127.0.0.1:8001", "127.0.0.1:8002"],
    "port": 8080,
    "https_port": 8443,
    "certificate": "/tls/cert.pem",
    "certificate_key": "/tls/key.pem",
    "static_root": "/srv/app",
    "snippets": "/etc/nginx/snippets",
    "log_dir": "/var/log/nginx",
    "brotli": True,
}


def _add_headers(snippet: str) -> dict[str, str]:
    text = (SNIPPETS / snippet).read_text()
    return {
        name.lower(): value
        for name, value in re.findall(r'^add_header (\S+) "([^"]*)" always;$', text, re.MULTILINE)
    }


def test_template_renders_with_every_value() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    assert "listen 127.0.0.1:8443 ssl http2;" in conf
    assert "keepalive 16;" in conf
    assert "brotli on;" in conf


def test_template_redirect_omits_the_default_https_port() -> None:
    conf = render(APP_TEMPLATE.read_text(), **{**VALUES, "https_port": 443})

    assert "return 301 https://$host$request_uri;" in conf


def test_template_declares_limit_req_zone_before_any_server() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    zone = re.search(r"^limit_req_zone ", conf, re.MULTILINE)
    first_server = re.search(r"^server \{", conf, re.MULTILINE)
    assert zone is not None
    assert first_server is not None
    assert zone.start() < first_server.start()


def test_template_never_compresses_event_streams() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    types = re.findall(r"^(?:gzip|brotli)_types (.*);$", conf, re.MULTILINE)
    assert len(types) == 2
    assert all("text/event-stream" not in line for line in types)


def test_snippet_security_headers_match_the_apps_headers() -> None:
    app_headers = {
        name.decode(): value.decode()
        for name, value in security_headers(Settings(_env_file=None, app_env="production"))
    }
    snippet = {**_add_headers("security-headers.conf"), **_add_headers("hsts.conf")}

    assert snippet.pop("content-security-policy")  # a policy for files, not pages
    assert snippet == app_headers
    assert snippet["strict-transport-security"] == HSTS


def test_proxy_snippet_enables_upstream_keepalive() -> None:
    text = (SNIPPETS / "proxy.conf").read_text()

    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    assert "non_idempotent" not in text.split("proxy_next_upstream ", 1)[1].split(";")[0]


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    if not check("nginx").available:
        if strict_mode():
            pytest.fail("nginx is missing and OPSLAB_STRICT is set")
        pytest.skip("nginx is not installed")
    server = Nginx(name="t-template-nginx")
    yield server
    server.stop()


def test_template_passes_nginx_test_with_real_paths(nginx: Nginx, tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path)
    values = {
        **{k: v for k, v in VALUES.items() if k != "port"},
        "certificate": cert.cert,
        "certificate_key": cert.key,
        "snippets": SNIPPETS,
        "log_dir": nginx.prefix / "logs",
        "brotli": False,
    }

    ok, output = nginx.test(nginx.config(APP_TEMPLATE.read_text(), **values))

    assert ok, output


def test_template_serves_metrics_to_loopback_only() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    block = conf.split("location = /metrics {", 1)[1].split("}", 1)[0]
    assert "allow 127.0.0.1;" in block
    assert block.rstrip().splitlines()[-1].strip() == "proxy_pass http://app;"
    assert "deny all;" in block


def _location(conf: str, head: str) -> str:
    return conf.split(f"location {head} {{", 1)[1].split("}", 1)[0]


def test_template_limits_every_write_and_the_stream() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    assert "limit_req zone=api " in _location(conf, "/api/")  # every method
    assert "limit_req zone=writes " in _location(conf, "/")  # forms and chat posts
    assert "limit_conn streams 5;" in _location(conf, "= /chat/stream")
    key_map = conf.split("map $request_method $write_limit_key {", 1)[1].split("}", 1)[0]
    assert 'GET      "";' in key_map  # reads are not counted
    assert "default  $binary_remote_addr;" in key_map


def test_template_closes_idle_upstream_connections_before_the_app() -> None:
    conf = render(APP_TEMPLATE.read_text(), **VALUES)

    upstream = conf.split("upstream app {", 1)[1].split("}", 1)[0]
    found = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream, re.MULTILINE)
    nginx_seconds = int(found.group(1)) if found else 60  # nginx's default
    assert nginx_seconds < Settings(_env_file=None).idle_timeout  # was 60 > 5


# gixy-ng findings kept on purpose, by check name: each is explained in the template.
GIXY_ALLOWED: frozenset[str] = frozenset()


def _gixy() -> str:
    found = shutil.which("gixy") or shutil.which("gixy", path=str(Path(sys.executable).parent))
    if found is None:
        if strict_mode():
            pytest.fail("gixy is missing (pip install gixy-ng) and OPSLAB_STRICT is set")
        pytest.skip("gixy is not installed (pip install gixy-ng)")
    return found


@pytest.mark.parametrize(
    "upstreams",
    [VALUES["upstreams"], ["unix:/srv/deploy/sockets/live.sock"]],
    ids=["tcp", "deploy-socket"],
)
def test_gixy_finds_nothing_in_the_rendered_config(tmp_path: Path, upstreams: list[str]) -> None:
    gixy = _gixy()
    values = {**VALUES, "upstreams": upstreams, "snippets": SNIPPETS, "log_dir": tmp_path}
    conf = render(
        MAIN_TEMPLATE, http=render(APP_TEMPLATE.read_text(), **values), modules=[], user=None,
        worker_processes=1, prefix=tmp_path, error_log_level="notice", mime_types=None,
    )  # fmt: skip
    (tmp_path / "nginx.conf").write_text(conf)

    # No --nginx-version: its CVE list compares upstream version numbers, and Debian
    # patches CVEs into 1.22.1 without changing the number (the package's job, not the
    # config's). Every check of the configuration itself runs.
    done = subprocess.run(
        [gixy, "-f", "json", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = json.loads(done.stdout or "[]")

    assert {f["plugin"] for f in findings} - GIXY_ALLOWED == set(), done.stdout
