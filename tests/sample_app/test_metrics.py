"""Metrics: route-template labels (bounded cardinality), business counters, exposition."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sample_app.config import Settings
from sample_app.main import create_app


def _samples(client: TestClient, name: str) -> list:
    text = client.get("/metrics").text
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_metrics_exposition_content_type(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")


def test_request_labels_use_route_template_not_raw_path(client: TestClient) -> None:
    for todo_id in range(1, 21):
        client.get(f"/api/todos/{todo_id}")
    routes = {s.labels["route"] for s in _samples(client, "http_requests_total")}
    assert "/api/todos/{todo_id}" in routes
    assert not any(route.startswith("/api/todos/") and "{" not in route for route in routes)


def test_unmatched_paths_share_one_label(client: TestClient) -> None:
    client.get("/wp-login.php")
    client.get("/no/such/page/123")
    routes = {s.labels["route"] for s in _samples(client, "http_requests_total")}
    assert "<unmatched>" in routes
    assert "/wp-login.php" not in routes


def test_request_counter_counts_status(client: TestClient) -> None:
    def count(status: str) -> float:
        return sum(
            s.value
            for s in _samples(client, "http_requests_total")
            if s.labels["route"] == "/api/todos/{todo_id}" and s.labels["status"] == status
        )

    before = count("404")
    client.get("/api/todos/999")
    client.get("/api/todos/998")
    assert count("404") == before + 2


def test_todos_created_counter_increments(client: TestClient) -> None:
    def created() -> float:
        return _samples(client, "todos_created_total")[0].value

    before = created()
    client.post("/api/todos", json={"title": "a"})
    client.post("/api/todos", json={"title": ""})  # rejected: not counted
    assert created() == before + 1


def test_latency_histogram_has_slo_bucket(client: TestClient) -> None:
    client.get("/health")
    buckets = {
        s.labels["le"]
        for s in _samples(client, "http_request_duration_seconds_bucket")
        if s.labels["route"] == "/health"
    }
    assert "0.25" in buckets


def test_plain_routes_and_mounts_get_templates(client: TestClient) -> None:
    client.get("/static/no-such-file.css")
    client.get("/metrics")
    routes = {s.labels["route"] for s in _samples(client, "http_requests_total")}
    assert {"/metrics", "/static/{path}"} <= routes


def test_metrics_disabled_removes_endpoint(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, app_env="development", data_dir=tmp_path, metrics_enabled=False
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/health").status_code == 200
