"""The practice check on the app's manifests, and the two models section 08 draws."""

from __future__ import annotations

import copy
import itertools

import pytest

from opslab import k8s
from opslab import k8s_practice as practice


@pytest.fixture(scope="module")
def objects() -> list[k8s.Manifest]:
    return k8s.load()


def test_the_shipped_manifests_break_no_practice(objects) -> None:
    assert practice.findings(objects) == []
    container = k8s.app_container(objects)
    settings = k8s.container_settings(container)
    # The model's propagation allowance is covered with room to spare.
    assert k8s.prestop_seconds(container) + settings.drain_seconds > practice.PROPAGATION_SECONDS


def _liveness_on_ready(c, d) -> None:
    c["livenessProbe"]["httpGet"]["path"] = "/ready"


def _startup_on_ready(c, d) -> None:
    c["startupProbe"]["httpGet"]["path"] = "/ready"


def _readiness_on_health(c, d) -> None:
    c["readinessProbe"]["httpGet"]["path"] = "/health"


def _no_liveness(c, d) -> None:
    del c["livenessProbe"]


def _no_prestop(c, d) -> None:
    del c["lifecycle"]


def _default_grace(c, d) -> None:  # 30 s default, but a 25 s drain: too short
    del d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    next(e for e in c["env"] if e["name"] == "DRAIN_SECONDS")["value"] = "25"


def _huge_grace(c, d) -> None:  # a stuck pod would hold a node drain for an hour
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3600


def _recreate(c, d) -> None:
    d["spec"]["strategy"] = {"type": "Recreate"}


def _default_strategy_four(c, d) -> None:  # 25 %/25 % of 4 replicas: one may be unready
    d["spec"]["replicas"] = 4
    del d["spec"]["strategy"]


def _inline_secret(c, d) -> None:
    c["env"].append({"name": "CSRF_SECRET", "value": "x" * 48})


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (_liveness_on_ready, "probes"),
        (_startup_on_ready, "probes"),
        (_readiness_on_health, "probes"),
        (_no_liveness, "probes"),
        (_no_prestop, "prestop"),
        (_default_grace, "grace"),
        (_huge_grace, "grace"),
        (_recreate, "rollout"),
        (_default_strategy_four, "rollout"),
        (_inline_secret, "secrets"),
    ],
)
def test_each_mistake_is_found_under_its_rule(objects, change, rule: str) -> None:
    broken = practice.changed(objects, change)
    assert k8s.validate(broken) == []  # the schema accepts every one of them
    assert [r for r, _ in practice.findings(broken)] == [rule]


def test_rollout_steps_refuses_a_count_it_would_take_for_ever_to_step_through() -> None:
    with pytest.raises(ValueError, match="replicas"):
        k8s.rollout_steps(10**9, 1, 0)


# ----- the endpoint-removal race -------------------------------------------------------------

SHUTDOWN = practice.Shutdown(closed=1.05, exited=1.2)  # DRAIN_SECONDS 1, as measured
RACE = {"rate": 100, "replicas": 2, "seconds": 0.02, "slow_every": 20, "slow_seconds": 4.0}


def _fates(prestop: float, grace: float, propagation: float = 3.0) -> dict[str, int]:
    term = practice.Termination(prestop, grace, SHUTDOWN, 8.0, propagation)
    requests, _ = practice.termination_race(term, **RACE)
    fates = {"served": 0, "refused": 0, "cut": 0}
    for request in requests:
        fates[request["fate"]] += 1
    return fates


def test_race_with_prestop_loses_nothing() -> None:
    fates = _fates(prestop=5, grace=16)
    assert fates == {"served": 150, "refused": 0, "cut": 0}  # 100/s for 3 s, half to the pod


def test_race_without_prestop_refuses_what_arrives_after_the_port_closed() -> None:
    fates = _fates(prestop=0, grace=11)
    # Arrivals at the pod every 0.02 s from 1.05 s (port closed) to 3 s (routers updated).
    assert fates["refused"] == sum(1 for k in range(0, 300, 2) if k / 100 >= SHUTDOWN.closed)
    assert fates["cut"] == 0


def test_race_with_a_short_grace_period_cuts_slow_requests_at_sigkill() -> None:
    term = practice.Termination(5, 6, SHUTDOWN, 8.0, propagation=3.0)
    requests, events = practice.termination_race(term, **RACE)
    assert events["SIGKILL"] == 6
    cut = [r for r in requests if r["fate"] == "cut"]
    assert cut
    assert all(r["start"] + r["seconds"] > 6 for r in cut)
    assert all(r["seconds"] == RACE["slow_seconds"] for r in cut)


def test_race_when_routers_are_slower_than_prestop_and_drain() -> None:
    assert _fates(prestop=5, grace=16, propagation=8.0)["refused"] > 0


def test_the_real_apps_shutdown_is_measured_from_outside() -> None:
    shutdown, startup = practice.measure_shutdown(drain_seconds=0.5, shutdown_timeout=2)
    assert 0.5 <= shutdown.closed < shutdown.exited  # serving through the drain, then exit
    assert startup > 0


# ----- a database outage ---------------------------------------------------------------------


def _recovery(container: dict, outage: float) -> tuple[int, float]:
    rows = practice.probe_outage(container, outage=outage, startup=0.5, horizon=outage + 400)
    back = min(r["t"] for r in rows if r["t"] >= outage and r["ready"])
    return rows[-1]["restarts"], back - outage


def test_outage_with_liveness_on_health_restarts_nothing(objects) -> None:
    container = k8s.app_container(objects)
    restarts, delay = _recovery(container, 120)
    assert restarts == 0
    assert delay <= container["readinessProbe"]["periodSeconds"]  # the next readiness probe


def test_outage_with_liveness_on_ready_restarts_with_growing_back_off(objects) -> None:
    container = copy.deepcopy(k8s.app_container(objects))
    container["livenessProbe"]["httpGet"]["path"] = "/ready"
    live = container["livenessProbe"]
    first_restart = live["periodSeconds"] * (live["failureThreshold"] - 1)  # probes at 0, 10, 20
    rows = practice.probe_outage(container, outage=120, startup=0.5, horizon=300)
    restarted_at = [
        r["t"] for prev, r in itertools.pairwise(rows) if r["restarts"] > prev["restarts"]
    ]
    assert restarted_at[0] == pytest.approx(first_restart)
    gaps = [b - a for a, b in itertools.pairwise(restarted_at)]
    assert gaps == sorted(gaps)  # back-off: each wait at least as long as the one before
    short, long = _recovery(container, 30), _recovery(container, 300)
    assert short[0] < long[0]
    assert long[1] > _recovery(k8s.app_container(objects), 300)[1]
