"""A real nginx in a private prefix: validation, proxying, reloads, graceful stop."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import jinja2
import pytest

from opslab.nginx import Nginx, NginxConfigError, brotli_module_path, nginx_version, render
from opslab.procs import ManagedProcess, free_port

PROXY = """
upstream app { server 127.0.0.1:{{ upstream }}; }
server {
    listen 127.0.0.1:{{ port }};
    location / { proxy_pass http://app; }
}
"""


@pytest.fixture
def nginx(require_tool: Callable[[str], None]) -> Iterator[Nginx]:
    require_tool("nginx")
    server = Nginx(name="t-nginx")
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[int]:
    """A real HTTP server (Python's http.server) for nginx to proxy to."""
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with ManagedProcess(cmd, name="t-upstream") as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/")
        yield port


def test_render_fills_values_and_rejects_missing_ones() -> None:
    assert render("listen {{ port }};", port=8080) == "listen 8080;"
    with pytest.raises(jinja2.UndefinedError):
        render("listen {{ port }};")


def test_nginx_version_is_a_version_number(require_tool: Callable[[str], None]) -> None:
    require_tool("nginx")
    assert re.fullmatch(r"\d+\.\d+\.\d+", nginx_version() or "")


def test_config_keeps_every_path_inside_the_prefix(nginx: Nginx) -> None:
    conf = nginx.config(PROXY, upstream=1234)
    paths = re.findall(r"(?:pid|error_log|access_log|_temp_path) (\S+?);?\s", conf)

    assert len(paths) >= 8
    assert all(path.startswith(str(nginx.prefix)) for path in paths)
    assert f"listen 127.0.0.1:{nginx.port};" in conf


def test_test_passes_on_valid_config(nginx: Nginx) -> None:
    ok, output = nginx.test(nginx.config(PROXY, upstream=1234))

    assert ok
    assert "test is successful" in output


def test_test_fails_with_nginx_message_on_broken_config(nginx: Nginx) -> None:
    # limit_req_zone is only valid in http {}: nginx 1.22 says so (see pitfalls.md).
    broken = """
server {
    listen {{ port }};
    limit_req_zone $binary_remote_addr zone=a:1m rate=1r/s;
}
"""

    ok, output = nginx.test(nginx.config(broken))

    assert not ok
    assert '"limit_req_zone" directive is not allowed here' in output


def test_start_proxies_to_real_upstream(nginx: Nginx, upstream: int) -> None:
    nginx.start(nginx.config(PROXY, upstream=upstream))

    response = httpx.get(f"{nginx.url}/", trust_env=False)

    assert response.status_code == 200
    assert "Directory listing" in response.text  # http.server's page, through nginx
    assert response.headers["server"].startswith("nginx")
    # nginx writes the access log line just after sending the response: allow a moment.
    deadline = time.monotonic() + 5
    while "GET / HTTP/1.1" not in nginx.access_log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET / HTTP/1.1" in nginx.access_log_text()


def test_reload_with_broken_config_keeps_serving_the_old_one(nginx: Nginx, upstream: int) -> None:
    good = nginx.config(PROXY, upstream=upstream)
    nginx.start(good)

    with pytest.raises(NginxConfigError, match='unknown directive "proxy_passs"'):
        nginx.reload(good.replace("proxy_pass ", "proxy_passs "))

    assert nginx.conf_path.read_text() == good
    assert httpx.get(f"{nginx.url}/", trust_env=False).status_code == 200


def test_reload_applies_valid_config_without_restart(nginx: Nginx, upstream: int) -> None:
    nginx.start(nginx.config(PROXY, upstream=upstream))
    master = nginx.pid
    extra = PROXY.replace("location / {", "location = /teapot { return 418; }\n    location / {")

    nginx.reload(nginx.config(extra, upstream=upstream))

    assert httpx.get(f"{nginx.url}/teapot", trust_env=False).status_code == 418
    assert nginx.pid == master
    assert "reconfiguring" in nginx.error_log_text()


def test_stop_is_graceful_and_closes_the_port(nginx: Nginx, upstream: int) -> None:
    nginx.start(nginx.config(PROXY, upstream=upstream))

    assert nginx.stop() == 0  # SIGQUIT: graceful shutdown, clean exit

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{nginx.url}/", trust_env=False)


def test_brotli_module_loads_when_installed(
    nginx: Nginx, require_tool: Callable[[str], None]
) -> None:
    module = brotli_module_path()
    if module is None:
        require_tool("nginx-brotli")
    body = PROXY.replace("location / {", "brotli on;\n    location / {")

    ok, output = nginx.test(nginx.config(body, upstream=1234, modules=[module]))

    assert ok, output
