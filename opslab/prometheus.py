"""A real Prometheus server on loopback, scraping the notebook's servers, queried over HTTP.

Notebooks ask Prometheus the questions operators ask (`up`, rates, p95 latency) through
its HTTP API (`/api/v1/query`), exactly as Grafana or an alert rule would.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import httpx

from opslab.caps import MissingCapability, find_binary, install_hint
from opslab.procs import ManagedProcess, ProcessError, free_port

log = logging.getLogger(__name__)

Targets = Sequence[str] | Mapping[str, Sequence[str]]
Paths = Sequence[str | os.PathLike[str]]


class PrometheusError(ProcessError):
    """Prometheus answered a request with an error."""


def _timestamp(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def render_config(
    jobs: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str,
    rule_files: Paths = (),
    metrics_path: str = "/metrics",
) -> str:
    """A prometheus.yml with one static scrape job per entry of `jobs` (JSON strings are YAML)."""
    q = json.dumps
    lines = [
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  scrape_timeout: {scrape_interval}",
        f"  evaluation_interval: {scrape_interval}",
    ]
    if rule_files:
        lines.append("rule_files:")
        lines += [f"  - {q(str(Path(path).resolve()))}" for path in rule_files]
    lines.append("scrape_configs:" if jobs else "scrape_configs: []")
    for job, targets in jobs.items():
        lines += [
            f"  - job_name: {q(job)}",
            f"    metrics_path: {q(metrics_path)}",
            "    static_configs:",
            f"      - targets: {q(list(targets))}",
        ]
    return "\n".join(lines) + "\n"


class Prometheus(ManagedProcess):
    """A Prometheus server with its own config, TSDB directory and loopback port."""

    def __init__(
        self,
        targets: Targets = (),
        *,
        name: str = "prometheus",
        scrape_interval: str = "1s",
        rule_files: Paths = (),
        metrics_path: str = "/metrics",
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        binary = binary or find_binary("prometheus")
        if binary is None:
            raise MissingCapability(f"prometheus is not installed.\n{install_hint('prometheus')}")
        self.port = port or free_port()
        super().__init__([binary], name=name)
        self.config_path = self.workdir / "prometheus.yml"
        self.cmd = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",  # lets reload() POST /-/reload
        ]
        self.jobs = self._jobs(targets)
        self.scrape_interval = scrape_interval
        self.rule_files = list(rule_files)
        self.metrics_path = metrics_path

    @staticmethod
    def _jobs(targets: Targets) -> dict[str, list[str]]:
        if isinstance(targets, Mapping):
            return {job: list(hosts) for job, hosts in targets.items()}
        return {"app": list(targets)} if targets else {}

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port> (the web UI and the API)."""
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The prometheus.yml this server runs with."""
        return render_config(
            self.jobs,
            scrape_interval=self.scrape_interval,
            rule_files=self.rule_files,
            metrics_path=self.metrics_path,
        )

    def start(self, *, timeout: float = 30.0) -> Self:
        """Write the config, start Prometheus and wait until `/-/ready`."""
        self.config_path.write_text(self.config_text())
        return super().start(timeout=timeout)

    def ready(self, timeout: float) -> None:
        """Prometheus is ready once `/-/ready` answers 200."""
        self.wait_http(f"{self.url}/-/ready", timeout=timeout)

    def reload(self, *, targets: Targets | None = None, rule_files: Paths | None = None) -> None:
        """Apply new targets or rule files through POST /-/reload (no restart, data kept)."""
        if targets is not None:
            self.jobs = self._jobs(targets)
        if rule_files is not None:
            self.rule_files = list(rule_files)
        self.config_path.write_text(self.config_text())
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            response = client.post(f"{self.url}/-/reload")
        if response.status_code != 200:
            detail = response.text.strip()
            raise PrometheusError(f"reload failed ({response.status_code}): {detail}")

    def _api(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            response = client.get(f"{self.url}/api/v1/{endpoint}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{endpoint}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, *, at: float | datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate an instant query; each result has `metric` labels and `value` [ts, "v"]."""
        params = {"query": promql} | ({"time": _timestamp(at)} if at is not None else {})
        data = self._api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_value(self, promql: str) -> float | None:
        """The single number a query returns (None if empty; error if several series)."""
        results = self.query(promql)
        if len(results) > 1:
            raise PrometheusError(f"{promql!r} returned {len(results)} series, expected one")
        return float(results[0]["value"][1]) if results else None

    def query_range(
        self,
        promql: str,
        *,
        start: float | datetime,
        end: float | datetime | None = None,
        step: float | str = 1.0,
    ) -> list[dict[str, Any]]:
        """Evaluate a range query; each result has `metric` and `values` [[ts, "v"], ...]."""
        params = {
            "query": promql,
            "start": _timestamp(start),
            "end": _timestamp(end) if end is not None else time.time(),
            "step": step,
        }
        return list(self._api("query_range", params)["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets: job, instance, health, last error, last scrape."""
        return [
            {
                "job": target["labels"].get("job"),
                "instance": target["labels"].get("instance"),
                "health": target["health"],
                "last_error": target.get("lastError", ""),
                "last_scrape": target.get("lastScrape"),
            }
            for target in self._api("targets", {"state": "active"})["activeTargets"]
        ]

    def wait_for_scrape(self, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every configured target has been scraped successfully."""
        expected = sum(len(hosts) for hosts in self.jobs.values())
        deadline, current = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            current = self.targets()
            if len(current) >= expected and all(t["health"] == "up" for t in current):
                return current
            time.sleep(0.25)
        raise PrometheusError(f"targets not all up within {timeout:g}s: {current}")

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups, with each rule's state and health."""
        return list(self._api("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (pending or firing)."""
        return list(self._api("alerts")["alerts"])
