"""The panels' runs, on real servers: what each measures for a knob setting."""

from __future__ import annotations

import opslab
from opslab import experiments


def test_sigterm_inside_the_grace_period_closes_the_pool_and_loses_nothing() -> None:
    fig, table = experiments.sigterm(1, 3, 0.5, 5)
    row = table.iloc[0]

    assert row["completed"] == 4
    assert not row["killed (SIGKILL)"]
    assert row["DB pool closed"]
    assert fig.axes[0].get_title() == "SIGTERM, then SIGKILL after 5 s"
    assert not opslab.running_processes()


def test_sigterm_with_a_grace_shorter_than_the_timeout_ends_in_sigkill() -> None:
    _fig, table = experiments.sigterm(0, 5, 3, 1)
    row = table.iloc[0]

    assert row["killed (SIGKILL)"]
    assert not row["DB pool closed"]
    assert row["failed"] == 4
    assert 1 <= row["SIGTERM→exit (s)"] < 2


def test_rate_limit_refuses_what_exceeds_the_burst_and_the_rate(require_tool) -> None:
    require_tool("nginx")
    _fig, table = experiments.rate_limit(5, 2, 40, seconds=1.0)
    row = table.iloc[0]

    assert row["other"] == 0
    assert row["429 (refused by nginx)"] > 0
    assert row["200 (passed)"] <= row["burst + 1 + rate * elapsed"] + 1


def test_rate_limit_passes_everything_below_the_rate(require_tool) -> None:
    require_tool("nginx")
    _fig, table = experiments.rate_limit(50, 5, 20, seconds=1.0)

    assert table.iloc[0]["429 (refused by nginx)"] == 0
    assert table.iloc[0]["200 (passed)"] == table.iloc[0]["sent"]


def test_prometheus_load_starts_stopped_servers_and_sees_the_slow_share(require_tool) -> None:
    require_tool("prometheus")
    from opslab.metrics_lab import AppPrometheus

    app = opslab.start_app(name="panel-test-app")
    app.stop()  # as after the section's clean-up cell
    prom = AppPrometheus([f"127.0.0.1:{app.port}"], name="panel-test-prom")
    _fig, table = experiments.prometheus_load(40, 4, 0.5, app=app, prom=prom)

    assert not app.running
    assert not prom.running
    measured, client = table.loc["requests/s"]
    assert abs(measured - client) / client < 0.3
    assert (table.loc["p95 (s)"] > experiments.SLO_SECONDS).all()  # 9 % of requests are slow
