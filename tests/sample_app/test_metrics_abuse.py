"""Attacks on the metrics and the ops endpoints: bounded labels, who may read what."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sample_app.config import Settings
from sample_app.main import create_app
from sample_app.metrics import LATENCY_BUCKETS, metrics_endpoint, status_label
from tests.sample_app.live import raw_exchange, serve
from tests.sample_app.test_security import PRODUCTION_SECRETS

MADE_UP_METHODS = 3000


def _series(text: str) -> int:
    return sum(
        len(family.samples)
        for family in text_string_to_metric_families(text)
        if family.name.startswith("http_request")
    )


def test_made_up_methods_do_not_grow_metrics(tmp_path: Path) -> None:
    app = create_app(Settings(_env_file=None, app_env="development", data_dir=tmp_path))
    with serve(app) as address:
        url = f"http://{address[0]}:{address[1]}/metrics"
        before = httpx.get(url, timeout=10).text
        # h11 accepts any token as a method: pipeline them all on one connection.
        flood = b"".join(
            f"M{n:05d}X /health HTTP/1.1\r\nHost: t\r\n\r\n".encode()
            for n in range(MADE_UP_METHODS)
        )
        last = b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        answers = raw_exchange(address, flood + last)
        assert answers.count(b"HTTP/1.1 ") == MADE_UP_METHODS + 1
        start = time.perf_counter()
        after = httpx.get(url, timeout=30).text
        scrape_seconds = time.perf_counter() - start
    grown = _series(after) - _series(before)
    print(f"series grown {grown}, /metrics {len(after)} bytes, scrape {scrape_seconds:.3f}s")
    # Three label sets (other /health 405, GET /health, GET /metrics), each a counter
    # (total, created) and a histogram (buckets, +Inf, sum, count, created).
    assert grown <= 3 * (2 + len(LATENCY_BUCKETS) + 4)
    assert len(after) < 200_000
    assert 'method="other"' in after


def test_status_label_refuses_codes_outside_http() -> None:
    assert status_label(404) == "404"
    assert status_label(1000) == status_label(42) == "other"


def test_metrics_render_off_the_event_loop() -> None:
    # A sync endpoint runs in Starlette's thread pool: a slow scrape stalls no request.
    assert not inspect.iscoroutinefunction(metrics_endpoint)


def test_metrics_refused_outside_allowed_networks(client: TestClient) -> None:
    outsider = TestClient(client.app, client=("203.0.113.7", 40000))
    assert outsider.get("/metrics").status_code == 403
    assert client.get("/metrics").status_code == 200


def test_metrics_allowed_networks_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", "10.1.0.0/16, ::1/128")
    networks = [str(n) for n in Settings(_env_file=None).metrics_allowed_networks]
    assert networks == ["10.1.0.0/16", "::1/128"]


def test_debug_routes_absent_outside_development(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, app_env="production", data_dir=tmp_path, **PRODUCTION_SECRETS
    )
    with TestClient(create_app(settings)) as production:
        assert production.get("/debug/slow", params={"seconds": 0}).status_code == 404


def test_version_shows_identity_only(client: TestClient) -> None:
    assert set(client.get("/version").json()) == {"version", "commit", "build_time", "python"}
