"""The metrics notebook's helpers: exposition parsing, the app's Prometheus files, load rounds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from opslab import metrics_lab
from opslab.app import start_app


def _exposition() -> str:
    registry = CollectorRegistry()
    requests = Counter("http_requests_total", "r", ["route", "status"], registry=registry)
    latency = Histogram("http_request_duration_seconds", "l", buckets=(0.1, 1.0), registry=registry)
    other = Counter("todos_created_total", "t", registry=registry)
    requests.labels("/a", "200").inc(3)
    requests.labels("/a", "404").inc()
    latency.observe(0.05)
    other.inc(2)
    return generate_latest(registry).decode()


def test_samples_lists_each_sample_with_labels() -> None:
    frame = metrics_lab.samples(_exposition())

    row = frame[frame["name"] == "todos_created_total"].iloc[0]
    assert row["type"] == "counter"
    assert row["value"] == 2
    assert set(frame["family"]) >= {"http_requests", "http_request_duration_seconds"}


def test_sample_value_sums_matching_labels_only() -> None:
    text = _exposition()

    assert metrics_lab.sample_value(text, "http_requests_total") == 4
    assert metrics_lab.sample_value(text, "http_requests_total", status="200") == 3
    assert metrics_lab.sample_value(text, "http_requests_total", status="500") == 0


def test_count_series_counts_families_with_prefix() -> None:
    text = _exposition()

    # 2 counters + 2 _created; histogram: 3 buckets, _count, _sum, _created.
    assert metrics_lab.count_series(text) == 4 + 6
    assert metrics_lab.count_series(text, prefix="todos_") == 2


def test_select_filters_histogram_buckets() -> None:
    frame = metrics_lab.samples(_exposition())

    buckets = metrics_lab.select(frame, "http_request_duration_seconds_bucket")

    assert list(buckets["labels"].map(lambda labels: labels["le"])) == ["0.1", "1.0", "+Inf"]
    assert list(buckets["value"]) == [1, 1, 1]


def test_render_config_uses_lab_interval_for_timeout(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"

    config = yaml.safe_load(
        metrics_lab.render_config(["127.0.0.1:9"], rule_files=[rules], scrape_interval="1s")
    )

    assert config["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    assert config["rule_files"] == [str(rules)]
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:9"]}]


def test_render_config_defaults_to_production_interval() -> None:
    config = yaml.safe_load(metrics_lab.render_config(["127.0.0.1:9"]))

    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["scrape_timeout"] == "10s"
    assert config["rule_files"] == []


def test_lesson_rules_changes_only_for_durations(tmp_path: Path) -> None:
    path = metrics_lab.lesson_rules(tmp_path / "rules.yml", hold="2s")

    shipped = yaml.safe_load(metrics_lab.RULES_FILE.read_text())
    lesson = yaml.safe_load(path.read_text())
    alerts = [r for r in lesson["groups"][0]["rules"] if "alert" in r]
    assert alerts
    assert all(rule["for"] == "2s" for rule in alerts)
    for rule in shipped["groups"][0]["rules"]:
        rule.pop("for", None)
    for rule in lesson["groups"][0]["rules"]:
        rule.pop("for", None)
    assert lesson == shipped


def test_shipped_config_and_rules_pass_promtool(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("prometheus")  # Debian's prometheus package ships promtool
    config = tmp_path / "prometheus.yml"
    config.write_text(
        metrics_lab.render_config(["127.0.0.1:8000"], rule_files=[metrics_lab.RULES_FILE])
    )

    rules_ok, rules_output = metrics_lab.promtool("check", "rules", metrics_lab.RULES_FILE)
    config_ok, config_output = metrics_lab.promtool("check", "config", config)

    assert rules_ok, rules_output
    assert "SUCCESS: 3 rules found" in rules_output
    assert config_ok, config_output


def test_promtool_reports_a_broken_rule(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("prometheus")
    broken = tmp_path / "rules.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum(\n")

    ok, output = metrics_lab.promtool("check", "rules", broken)

    assert not ok
    assert "parse error" in output


@pytest.mark.slow
def test_app_prometheus_loads_shipped_rules(
    tmp_path: Path, require_tool: Callable[[str], None]
) -> None:
    require_tool("prometheus")
    with start_app(name="t-mlab-app") as app:
        prometheus = metrics_lab.AppPrometheus(
            [f"127.0.0.1:{app.port}"], name="t-mlab-prom", rule_files=[metrics_lab.RULES_FILE]
        )
        with prometheus:
            [target] = prometheus.wait_for_scrape(timeout=30)
            states = metrics_lab.rule_states(prometheus)
            config = prometheus.config_path.read_text()

    assert target["health"] == "up"
    assert states == {"HighServerErrorRatio": "inactive", "LatencyAboveSLO": "inactive"}
    assert "scrape_timeout: 1s" in config


def test_compare_throughput_alternates_order(http_server: str) -> None:
    rounds = metrics_lab.compare_throughput(
        {"a": http_server, "b": http_server}, path="/ok", rounds=2, requests=5, concurrency=1
    )

    assert list(rounds["app"]) == ["a", "b", "b", "a"]
    assert (rounds["req_per_s"] > 0).all()
    assert rounds["cpu_ms_per_req"].isna().all()  # a URL has no server process to measure
