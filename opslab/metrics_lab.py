"""Helpers for the metrics notebook: read `/metrics`, count series, run the app's Prometheus files.

Parsing uses `prometheus_client.parser`, the client library's own reader of the text
exposition format, so what is counted here is what Prometheus would ingest per scrape.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
from prometheus_client.parser import text_string_to_metric_families

import sample_app
from opslab.caps import find_binary
from opslab.load import Target, run_load
from opslab.nginx import render
from opslab.prometheus import Prometheus

OPS_DIR = Path(sample_app.__file__).parent / "ops" / "prometheus"
CONFIG_TEMPLATE = OPS_DIR / "prometheus.yml.j2"
RULES_FILE = OPS_DIR / "rules.yml"


def scrape(url: str) -> str:
    """GET `url` (a /metrics URL) on a fresh connection, as each Prometheus scrape may be."""
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.text


def samples(text: str) -> pd.DataFrame:
    """One row per sample: family, type, sample name, labels (dict) and value."""
    rows = [
        {
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": dict(sample.labels),
            "value": sample.value,
        }
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    return pd.DataFrame(rows, columns=["family", "type", "name", "labels", "value"])


def count_series(text: str, prefix: str = "http_request") -> int:
    """How many time series (samples) of families starting with `prefix` one scrape holds."""
    frame = samples(text)
    return int(frame["family"].str.startswith(prefix).sum())


def select(frame: pd.DataFrame, name: str, **labels: str) -> pd.DataFrame:
    """The rows of a `samples()` frame called `name` whose labels include `labels`."""
    frame = frame[frame["name"] == name]
    match = frame["labels"].map(lambda have: all(have.get(k) == v for k, v in labels.items()))
    return frame[match]


def sample_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return float(select(samples(text), name, **labels)["value"].sum())


def request_todo_ids(target: str, ids: Sequence[int] | range) -> int:
    """GET /api/todos/{id} for each id (404s expected); the number of requests sent."""
    with httpx.Client(base_url=target, timeout=10.0, trust_env=False) as client:
        for todo_id in ids:
            client.get(f"/api/todos/{todo_id}")
    return len(ids)


def render_config(
    targets: Sequence[str], *, rule_files: Sequence[str | Path] = (), **values: object
) -> str:
    """The app's prometheus.yml from its shipped template (scrape_interval etc. optional)."""
    files = [str(Path(path).resolve()) for path in rule_files]
    return render(CONFIG_TEMPLATE.read_text(), targets=list(targets), rule_files=files, **values)


def lesson_rules(dest: str | Path, *, hold: str = "2s") -> Path:
    """A copy of the shipped rules with every `for:` shortened to `hold` (a lab has seconds)."""
    text = re.sub(r"(?m)^(\s*for:\s*)\S+", rf"\g<1>{hold}", RULES_FILE.read_text())
    path = Path(dest)
    path.write_text(text)
    return path


def promtool(*args: str | Path) -> tuple[bool, str]:
    """Run `promtool ARGS` (e.g. "check", "rules", path): (passed, its output)."""
    binary = find_binary("promtool")
    if binary is None:
        raise FileNotFoundError("promtool is not installed (Debian: part of `prometheus`)")
    result = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


class AppPrometheus(Prometheus):
    """A Prometheus server whose prometheus.yml is rendered from the app's shipped template."""

    def config_text(self) -> str:
        """The shipped template filled with this server's targets, rules and interval."""
        [(job, targets)] = self.jobs.items()
        return render_config(
            targets,
            rule_files=self.rule_files,
            job=job,
            scrape_interval=self.scrape_interval,
            scrape_timeout=self.scrape_interval,
        )


def rule_states(prometheus: Prometheus) -> dict[str, str]:
    """Each alerting rule's state (inactive, pending, firing), from /api/v1/rules."""
    return {
        rule["name"]: rule["state"]
        for group in prometheus.rules()
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }


def watch_alert(
    prometheus: Prometheus, name: str, *, until: str = "firing", timeout: float = 20.0
) -> pd.DataFrame:
    """Poll an alert's state every 0.25 s until it reaches `until`; the (seconds, state) seen."""
    t0, rows = time.monotonic(), []
    while True:
        state = rule_states(prometheus).get(name, "missing")
        elapsed = time.monotonic() - t0
        if not rows or rows[-1]["state"] != state:
            rows.append({"seconds": round(elapsed, 2), "state": state})
        if state == until or elapsed > timeout:
            return pd.DataFrame(rows)
        time.sleep(0.25)


def _cpu_seconds(target: Target) -> float | None:
    """CPU time (user + system) used so far by a server process, if it is one of ours."""
    pid = getattr(target, "pid", None)
    if pid is None:
        return None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def compare_throughput(
    targets: Mapping[str, Target],
    *,
    path: str,
    rounds: int = 4,
    requests: int = 300,
    concurrency: int = 4,
    warmup: int = 50,
    **load: Any,
) -> pd.DataFrame:
    """Requests/s and server CPU ms per request of each target, in alternating rounds."""
    for target in targets.values():  # first requests pay for lazy imports and caches
        run_load(target, path=path, requests=warmup, concurrency=concurrency, **load)
    rows = []
    for round_no in range(rounds):
        # Alternate who goes first so warm-up and noise do not favour one side.
        order = list(targets.items())
        for label, target in order if round_no % 2 == 0 else reversed(order):
            cpu_before = _cpu_seconds(target)
            result = run_load(target, path=path, requests=requests, concurrency=concurrency, **load)
            cpu_after = _cpu_seconds(target)
            cpu_ms = (
                None
                if cpu_before is None or cpu_after is None
                else 1000 * (cpu_after - cpu_before) / result.total
            )
            rows.append(
                {
                    "round": round_no,
                    "app": label,
                    "req_per_s": result.throughput,
                    "cpu_ms_per_req": cpu_ms,
                }
            )
    return pd.DataFrame(rows)
