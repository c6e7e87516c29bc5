"""A real Prometheus scraping the real sample app, queried over its HTTP API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opslab.app import AppServer, start_app
from opslab.prometheus import Prometheus, PrometheusError, render_config

pytestmark = pytest.mark.slow

RULES = """\
groups:
  - name: opslab-test
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
"""


@pytest.fixture(scope="module")
def monitored(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], None]
) -> Iterator[tuple[Prometheus, AppServer]]:
    """The sample app and a Prometheus scraping it every second (the first scrape takes ~5 s)."""
    require_tool("prometheus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLAB_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        app = start_app(name="t-prom-app")
        with app, Prometheus([f"127.0.0.1:{app.port}"], name="t-prom") as prometheus:
            prometheus.wait_for_scrape(timeout=30)
            yield prometheus, app


def test_render_config_lists_jobs_targets_and_rule_files(tmp_path: Path) -> None:
    text = render_config(
        {"app": ["127.0.0.1:8001", "127.0.0.1:8002"]},
        scrape_interval="2s",
        rule_files=[tmp_path / "rules.yml"],
    )

    assert "scrape_interval: 2s" in text
    assert 'job_name: "app"' in text
    assert '- targets: ["127.0.0.1:8001", "127.0.0.1:8002"]' in text
    assert f'- "{tmp_path / "rules.yml"}"' in text


def test_prometheus_scrapes_app_and_up_is_one(monitored: tuple[Prometheus, AppServer]) -> None:
    prometheus, app = monitored

    [target] = prometheus.targets()
    assert target["health"] == "up"
    assert target["instance"] == f"127.0.0.1:{app.port}"
    assert prometheus.query_value("up") == 1.0
    [series] = prometheus.query("up")
    assert series["metric"]["job"] == "app"


def test_query_range_returns_samples(monitored: tuple[Prometheus, AppServer]) -> None:
    prometheus, _app = monitored

    [series] = prometheus.query_range("up", start=time.time() - 30, step=1)

    assert series["values"]
    assert all(value == "1" for _ts, value in series["values"])


def test_bad_query_raises_prometheus_error(monitored: tuple[Prometheus, AppServer]) -> None:
    prometheus, _app = monitored

    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum(")


def test_reload_loads_rule_files(monitored: tuple[Prometheus, AppServer], tmp_path: Path) -> None:
    prometheus, _app = monitored
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)

    prometheus.reload(rule_files=[rules])

    [group] = prometheus.rules()
    assert group["name"] == "opslab-test"
    assert group["rules"][0]["name"] == "job:up:sum"


def test_reload_with_invalid_rule_file_raises(
    monitored: tuple[Prometheus, AppServer], tmp_path: Path
) -> None:
    prometheus, _app = monitored
    rules = tmp_path / "broken.yml"
    rules.write_text("groups: [{name: x, rules: [{record: r, expr: 'sum('}]}]\n")

    with pytest.raises(PrometheusError, match="reload failed"):
        prometheus.reload(rule_files=[rules])
    prometheus.reload(rule_files=[])  # back to a valid config for the other tests
