"""nginx in front of two real app instances, configured from the app's own template."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from opslab.app import AppServer, start_app
from opslab.nginx import Nginx, brotli_module_path
from opslab.proxy import (
    AppProxy,
    Certificate,
    alternate_requests,
    build_static,
    first_event_delay,
    make_self_signed_cert,
    new_connections_per_request,
    render_app_config,
    tcp_time_wait,
)
from sample_app.assets import FINGERPRINTED, STATIC_DIR

pytestmark = pytest.mark.slow

SECURITY_HEADERS = ("strict-transport-security", "x-content-type-options", "x-frame-options")


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AppServer]]:
    """Two app instances, a and b."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLAB_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        with (
            start_app(name="t-proxy-a", instance_id="a") as a,
            start_app(name="t-proxy-b", instance_id="b") as b,
        ):
            yield [a, b]


@pytest.fixture(scope="module")
def proxy(apps: list[AppServer], require_tool: Callable[[str], None]) -> Iterator[AppProxy]:
    """nginx over both instances, on free ports, with a fresh certificate."""
    require_tool("nginx")
    with AppProxy(apps, name="t-proxy") as started:
        yield started


@pytest.fixture
def nginx(require_tool: Callable[[str], None]) -> Iterator[Nginx]:
    require_tool("nginx")
    server = Nginx(name="t-proxy-nginx")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def _render(nginx: Nginx, certificate: Certificate, tmp_path: Path, **values: object) -> str:
    return render_app_config(
        nginx,
        ["127.0.0.1:8001", "127.0.0.1:8002"],
        https_port=8443,
        certificate=certificate,
        static_root=tmp_path,
        **values,
    )


def test_make_self_signed_cert_names_localhost_and_loopback(certificate: Certificate) -> None:
    done = subprocess.run(
        ["openssl", "x509", "-in", str(certificate.cert), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert "DNS:localhost" in done.stdout
    assert "IP Address:127.0.0.1" in done.stdout
    assert certificate.key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("brotli", [False, True])
def test_render_app_config_passes_nginx_test(
    nginx: Nginx, certificate: Certificate, tmp_path: Path, brotli: bool
) -> None:
    if brotli and brotli_module_path() is None:
        pytest.skip("the nginx Brotli module is not installed")

    conf = _render(nginx, certificate, tmp_path, brotli=brotli)
    ok, output = nginx.test(conf)

    assert ok, output
    assert ("ngx_http_brotli_filter_module.so" in conf) is brotli
    assert "server 127.0.0.1:8002 max_fails=1" in conf
    assert "return 301 https://$host:8443$request_uri;" in conf


def test_render_app_config_with_limit_req_zone_in_server_fails_nginx_test(
    nginx: Nginx, certificate: Certificate, tmp_path: Path
) -> None:
    conf = _render(nginx, certificate, tmp_path)
    zone = re.search(r"^ *limit_req_zone .*;$", conf, re.MULTILINE)
    assert zone is not None
    moved = conf.replace(zone.group(0), "").replace(
        "client_max_body_size 1m;", f"client_max_body_size 1m;\n{zone.group(0)}"
    )

    ok, output = nginx.test(moved)

    assert not ok
    assert '"limit_req_zone" directive is not allowed here' in output


def test_build_static_fingerprints_a_copy_and_leaves_the_source_clean(tmp_path: Path) -> None:
    source_before = sorted(STATIC_DIR.rglob("*"))

    manifest = build_static(tmp_path)

    assert FINGERPRINTED.search(manifest["css/app.css"])
    assert (tmp_path / "static" / manifest["css/app.css"]).is_file()
    assert (tmp_path / "static" / "manifest.json").is_file()
    assert sorted(STATIC_DIR.rglob("*")) == source_before


def test_proxy_spreads_requests_over_both_instances(proxy: AppProxy) -> None:
    with proxy.client() as client:
        seen = {client.get("/health").headers["x-instance"] for _ in range(6)}

    assert seen == {"a", "b"}


def test_proxy_speaks_http2_with_a_verified_certificate(proxy: AppProxy) -> None:
    with proxy.client(http2=True) as client:
        response = client.get("/health")

    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{proxy.https_url}/health", trust_env=False)


def test_proxy_redirects_http_to_the_https_port(proxy: AppProxy) -> None:
    response = httpx.get(f"{proxy.http_url}/api/todos?x=1", trust_env=False)

    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{proxy.https_port}/api/todos?x=1"


def test_proxy_caches_only_fingerprinted_static_files_for_a_year(proxy: AppProxy) -> None:
    hashed = proxy.manifest["css/app.css"]
    with proxy.client() as client:
        fingerprinted = client.get(f"/static/{hashed}")
        plain = client.get("/static/css/app.css")

    assert fingerprinted.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert plain.status_code == 200
    assert "immutable" not in plain.headers["cache-control"]


def test_proxy_does_not_cache_a_missing_fingerprinted_file(proxy: AppProxy) -> None:
    hashed = proxy.manifest["css/app.css"]
    missing = re.sub(r"\.[0-9a-f]{12}\.", ".0123456789ab.", hashed)
    with proxy.client() as client:
        gone = client.get(f"/static/{missing}")
        present = client.get(f"/static/{hashed}")

    assert gone.status_code == 404
    assert "immutable" not in gone.headers.get("cache-control", "")  # was: a year
    assert present.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("path", ["/static/css/app.css", "/static/missing.css"])
def test_proxy_static_responses_carry_security_headers(proxy: AppProxy, path: str) -> None:
    with proxy.client() as client:
        response = client.get(path)

    assert response.headers.get("x-instance") is None  # nginx answered, not the app
    for name in SECURITY_HEADERS:
        assert len(response.headers.get_list(name)) == 1, name


def test_proxy_rate_limits_the_api_with_429(proxy: AppProxy) -> None:
    with proxy.client() as client:
        statuses = [client.get("/api/todos").status_code for _ in range(40)]

    assert statuses[0] == 200
    assert 429 in statuses


def test_proxy_streams_sse_without_buffering(proxy: AppProxy, apps: list[AppServer]) -> None:
    for app in apps:
        with app.client() as client:
            client.post("/api/chat/messages", json={"author": "t", "text": "hello"})
    with proxy.client() as client:
        delay = first_event_delay(client, "/chat/stream?ping=0.2", timeout=2.0)

    assert delay is not None
    assert delay < 1.0


def _closed_connection(port: int) -> int:
    """One request on a connection of its own, closed after the answer; its client port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    return client_port


def test_tcp_time_wait_counts_closed_connections(apps: list[AppServer]) -> None:
    if tcp_time_wait([apps[0].port]) is None:
        pytest.skip("no /proc/net/tcp")
    # Counted by their own client ports: the app port's older TIME_WAIT entries expire at
    # any moment (a minute after their close), so a before/after count on it can shrink.
    client_ports = [_closed_connection(apps[0].port) for _ in range(3)]

    counts = [tcp_time_wait([p]) for p in client_ports]
    assert all(count >= 1 for count in counts), counts  # >1 if a port also closed elsewhere


def test_proxy_sends_one_hsts_header_when_the_app_sends_its_own(
    require_tool: Callable[[str], None], certificate: Certificate
) -> None:
    require_tool("nginx")
    with (
        start_app(name="t-proxy-staging", app_env="staging") as app,
        AppProxy([app], name="t-proxy-hsts", certificate=certificate) as proxy,
    ):
        direct = httpx.get(f"{app.url}/health", trust_env=False)
        with proxy.client() as client:
            proxied = client.get("/health")

    assert "strict-transport-security" in direct.headers  # the app sends it outside dev
    assert len(proxied.headers.get_list("strict-transport-security")) == 1


def test_upstream_keepalive_reuses_connections_and_seed_location_does_not(
    apps: list[AppServer], require_tool: Callable[[str], None], certificate: Certificate
) -> None:
    require_tool("nginx")
    no_keepalive = "    location /seed/ { proxy_pass http://app/; }"
    ports = [app.port for app in apps]
    with (
        AppProxy(apps, name="t-proxy-ka", certificate=certificate) as proxy,
        proxy.client() as client,
    ):
        proxy.reload(extra_locations=no_keepalive)
        timings = alternate_requests(client, ["/health", "/seed/health"], requests=6)
        reused = new_connections_per_request(client, "/health", ports, requests=20)
        fresh = new_connections_per_request(client, "/seed/health", ports, requests=20)

    assert [path for path, _ in timings] == ["/health", "/seed/health"] * 3
    if reused is None or fresh is None:
        pytest.skip("no /proc/net/tcp")
    assert reused < 0.2
    assert fresh > 0.8


def test_revive_restarts_a_killed_app_and_nginx_uses_it_again(
    require_tool: Callable[[str], None], certificate: Certificate
) -> None:
    require_tool("nginx")
    with (
        start_app(name="t-revive-a", instance_id="a") as a,
        start_app(name="t-revive-b", instance_id="b") as b,
        AppProxy([a, b], name="t-proxy-revive", certificate=certificate) as proxy,
        proxy.client() as client,
    ):
        b.kill()
        assert {client.get("/health").headers["x-instance"] for _ in range(4)} == {"a"}

        assert proxy.revive() == ["t-revive-b"]

        assert {client.get("/health").headers["x-instance"] for _ in range(4)} == {"a", "b"}


def test_proxy_serves_metrics_to_loopback_only(proxy: AppProxy) -> None:
    with proxy.client() as local, proxy.client(local_address="127.0.0.2") as outsider:
        assert local.get("/metrics").status_code == 200
        assert outsider.get("/metrics").status_code == 403  # refused by nginx itself


def test_proxy_limits_writes_but_not_reads(proxy: AppProxy) -> None:
    with proxy.client(local_address="127.0.0.4") as client:
        reads = [client.get("/health").status_code for _ in range(40)]
        writes = [client.post("/todos", data={"title": "x"}).status_code for _ in range(40)]

    assert set(reads) == {200}
    assert writes[0] == 403  # the app: no CSRF token
    assert 429 in writes  # nginx: past the burst of writes


def test_proxy_caps_open_streams_per_client(proxy: AppProxy) -> None:
    with proxy.client(local_address="127.0.0.5") as client, ExitStack() as streams:
        statuses = []
        for _ in range(6):
            stream = streams.enter_context(client.stream("GET", "/chat/stream?ping=30"))
            statuses.append((stream.status_code, "x-instance" in stream.headers))

    assert statuses[:5] == [(200, True)] * 5
    assert statuses[5] == (429, False)  # nginx's limit_conn, before any app


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, 303),  # this page's own origin: https, nginx's port
        ({"scheme": "http"}, 403),  # was 303: the scheme was not compared
        ({"port": 1}, 403),  # was 303: nginx's `Host $host` dropped the port
    ],
)
def test_proxy_origin_check_compares_scheme_and_port(
    proxy: AppProxy, change: dict[str, object], status: int
) -> None:
    with proxy.client(local_address="127.0.0.6") as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
        assert token
        sent = str(httpx.URL(proxy.https_url).copy_with(**change)).rstrip("/")
        response = client.post(
            "/todos",
            data={"title": "origin", "csrf_token": token.group(1)},
            headers={"Origin": sent},
        )

    assert response.status_code == status
