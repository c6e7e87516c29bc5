"""The mistakes people make with the app on Kubernetes: found in manifests, shown in models.

`problems()` reads a set of manifests and names each practice of sections 03-07 it breaks
(liveness on the database, no preStop, a grace period shorter than the shutdown, a rollout
that drops below the replicas, secret values). No cluster runs here, so what a cluster
would do is *modelled*, from the manifests' own numbers and the real app's measured
shutdown: `termination_race()` (a pod being deleted while routers still send to it) and
`probe_outage()` (pods through a database outage, with liveness on /health or on /ready).
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from opslab import k8s
from opslab.app import start_app

# The app's probe routes: /health answers while the process lives and never touches the
# database; /ready is 503 while draining or when the database does not answer.
LIVENESS_PATH = "/health"
READINESS_PATH = "/ready"
# An allowance, not a measurement: how long kube-proxy and the ingress controller may take
# to learn that a pod left the Service's endpoints (their sync loops; a busy cluster's
# figure comes from its own control plane). The model's knob has this default.
PROPAGATION_SECONDS = 3.0
# A grace period far above what the shutdown needs keeps a stuck pod (and a node drain
# waiting on it) that long before SIGKILL.
MAX_EXTRA_GRACE = 60
# The kubelet's restart back-off: 10 s, doubled per restart, at most 5 min.
BACKOFF_SECONDS, BACKOFF_MAX = 10.0, 300.0


def changed(
    objects: list[k8s.Manifest], change: Callable[[dict[str, Any], k8s.Manifest], None]
) -> list[k8s.Manifest]:
    """A copy of the manifests with `change(app container, Deployment)` applied to it."""
    copied = copy.deepcopy(objects)
    change(k8s.app_container(copied), k8s.find(copied, "Deployment"))
    return copied


def _probe_path(container: dict[str, Any], kind: str) -> str | None:
    return container.get(kind, {}).get("httpGet", {}).get("path")


def problems(objects: list[k8s.Manifest], *, propagation: float = PROPAGATION_SECONDS) -> list[str]:
    """Each practice the manifests break, one line naming it and why it hurts."""
    return [message for _, message in findings(objects, propagation=propagation)]


def findings(
    objects: list[k8s.Manifest], *, propagation: float = PROPAGATION_SECONDS
) -> list[tuple[str, str]]:
    """(rule, message) for each broken practice; rules: probes, prestop, grace, rollout,
    secrets. The manifests must have passed the schema check (types are then right)."""
    deployment = k8s.find(objects, "Deployment")
    container = k8s.app_container(objects)
    found = [("probes", message) for message in _probe_problems(container)]
    settings = k8s.container_settings(container)
    prestop = k8s.prestop_seconds(container)
    if prestop + settings.drain_seconds < propagation:
        found.append(("prestop",
            f"preStop {prestop:g} s + DRAIN_SECONDS {settings.drain_seconds:g} s < "
            f"{propagation:g} s for routers to learn the pod left: requests reach a closed port"
        ))  # fmt: skip
    needed = k8s.grace_period(settings, prestop)
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace < needed:  # 30: Kubernetes' default
        found.append(("grace",
            f"terminationGracePeriodSeconds {grace} < {needed} (preStop + drain + "
            "SHUTDOWN_TIMEOUT + margin): SIGKILL cuts requests in flight"
        ))  # fmt: skip
    elif grace > needed + MAX_EXTRA_GRACE:
        found.append(("grace",
            f"terminationGracePeriodSeconds {grace} is over {MAX_EXTRA_GRACE} s above the "
            f"{needed} s the shutdown needs: a stuck pod would hold a node drain that long"
        ))  # fmt: skip
    found += [("rollout", message) for message in _rollout_problems(deployment)]
    return found + [("secrets", message) for message in k8s.secret_values(objects)]


def _probe_problems(container: dict[str, Any]) -> list[str]:
    found = [
        f"{kind} on {READINESS_PATH}: a database outage fails it on every pod and the "
        f"kubelet restarts them all; use {LIVENESS_PATH}"
        for kind in ("livenessProbe", "startupProbe")
        if _probe_path(container, kind) == READINESS_PATH
    ]
    if "livenessProbe" not in container:
        found.append("no livenessProbe: a hung process keeps its place and is never restarted")
    if _probe_path(container, "readinessProbe") != READINESS_PATH:
        found.append(
            f"readinessProbe not on {READINESS_PATH}: a draining pod or one without its "
            "database keeps receiving requests"
        )
    return found


def _rollout_problems(deployment: k8s.Manifest) -> list[str]:
    replicas = deployment["spec"].get("replicas", 1)
    strategy = deployment["spec"].get("strategy", {})
    if strategy.get("type") == "Recreate":
        return ["strategy Recreate: every old pod stops before a new one starts (downtime)"]
    rolling = strategy.get("rollingUpdate", {})
    steps = k8s.rollout_steps(
        replicas, rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")
    )
    lowest = min(step["ready"] for step in steps)
    if lowest < replicas:
        return [f"the rolling update goes down to {lowest} ready of {replicas} replicas"]
    return []


# ----- the real app's shutdown, measured --------------------------------------------------


@dataclass(frozen=True)
class Shutdown:
    """Seconds after SIGTERM, measured from outside: new connections refused, exited."""

    closed: float
    exited: float


def measure_shutdown(drain_seconds: float, shutdown_timeout: float) -> tuple[Shutdown, float]:
    """Start the real app, SIGTERM it, time it from a client; also its startup time."""
    started = time.monotonic()
    app = start_app(name="k8s-shutdown", drain_seconds=drain_seconds,
                    shutdown_timeout=shutdown_timeout)  # fmt: skip
    startup = time.monotonic() - started
    try:
        sent = time.monotonic()
        app.send_signal(signal.SIGTERM)
        closed = None
        with httpx.Client(base_url=app.url, timeout=1.0, trust_env=False) as http:
            while closed is None and time.monotonic() - sent < drain_seconds + shutdown_timeout:
                try:
                    http.get("/health", headers={"connection": "close"})
                except httpx.TransportError:
                    closed = time.monotonic() - sent
                time.sleep(0.01)
        app.wait(timeout=shutdown_timeout + 5)
        exited = time.monotonic() - sent
    finally:
        app.stop()
    return Shutdown(closed=closed if closed is not None else exited, exited=exited), startup


# ----- a pod's deletion while routers still send to it (a model) -------------------------


@dataclass(frozen=True)
class Termination:
    """One pod's deletion at t = 0: preStop, then SIGTERM, then the app's measured shutdown."""

    prestop: float
    grace: float
    shutdown: Shutdown
    shutdown_timeout: float  # the app's SHUTDOWN_TIMEOUT: uvicorn's wait for requests
    propagation: float = PROPAGATION_SECONDS

    @property
    def sigterm(self) -> float:
        return min(self.prestop, self.grace)  # the grace period runs out during preStop too

    @property
    def closed(self) -> float:
        return min(self.sigterm + self.shutdown.closed, self.grace)


def termination_race(
    term: Termination, *, rate: float, replicas: int, seconds: float, slow_every: int,
    slow_seconds: float,
) -> tuple[list[dict[str, Any]], dict[str, float]]:  # fmt: skip
    """Requests routed to the pod (1 in `replicas` until routers learn), and each one's fate.

    A request is *refused* when it reaches a closed port, *cut* when SIGKILL (the grace
    period's end) or uvicorn's SHUTDOWN_TIMEOUT ends it in flight, else *served*.
    Every `slow_every`-th takes `slow_seconds`, the rest `seconds`.
    """
    requests = []
    for k in range(math.ceil(term.propagation * rate)):
        if k % replicas:
            continue  # the other pods' share
        start = k / rate
        slow = (k // replicas) % slow_every == slow_every - 1
        requests.append({"start": start, "seconds": slow_seconds if slow else seconds})
    in_flight = [r["start"] + r["seconds"] for r in requests if r["start"] < term.closed]
    finished = max([term.closed + term.shutdown.exited - term.shutdown.closed, *in_flight])
    exited = min(finished, term.closed + term.shutdown_timeout)
    end = min(exited, term.grace)
    for r in requests:
        if r["start"] >= term.closed:
            r["fate"] = "refused"
        elif r["start"] + r["seconds"] > end:
            r["fate"] = "cut"
        else:
            r["fate"] = "served"
    events = {"deleted": 0.0, "routers updated": term.propagation, "SIGTERM": term.sigterm,
              "port closed": term.closed, "exited": end}  # fmt: skip
    if finished > term.grace:
        events["SIGKILL"] = term.grace
    return requests, events


# ----- a database outage and the liveness probe (a model) --------------------------------


def probe_outage(
    container: dict[str, Any], *, outage: float, startup: float, horizon: float, step: float = 0.1
) -> list[dict[str, Any]]:
    """One pod through a database outage from t = 0 to `outage`, as the kubelet probes it.

    Readiness fails while the database is down; liveness fails too when it is on /ready,
    and after `failureThreshold` failures the kubelet restarts the container (back-off,
    then `startup` seconds until it answers). Rows: time, ready, running, restarts.
    """
    live, ready = container["livenessProbe"], container["readinessProbe"]
    on_db = live["httpGet"]["path"] == READINESS_PATH
    rows, failures, restarts, up_at, ready_now = [], 0, 0, 0.0, True
    for i in range(round(horizon / step) + 1):
        t = i * step
        db_up = t >= outage
        running = t >= up_at
        if running and _due(t, up_at, ready["periodSeconds"], step):
            ready_now = db_up
        if not running:
            ready_now = False
        if running and _due(t, up_at, live["periodSeconds"], step):
            failures = failures + 1 if on_db and not db_up else 0
            if failures >= live.get("failureThreshold", 3):
                back_off = 0.0 if restarts == 0 else min(
                    BACKOFF_SECONDS * 2 ** (restarts - 1), BACKOFF_MAX
                )  # fmt: skip
                restarts, failures, up_at = restarts + 1, 0, t + back_off + startup
                ready_now = False
        rows.append({"t": round(t, 3), "ready": ready_now, "running": t >= up_at,
                     "restarts": restarts})  # fmt: skip
    return rows


def _due(t: float, since: float, period: float, step: float) -> bool:
    """Whether a probe with `period` runs in the step at `t` (first one at `since`)."""
    elapsed = t - since
    return elapsed >= 0 and (elapsed % period) < step - 1e-9
