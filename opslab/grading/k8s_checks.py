"""Checks for checkpoint 08: fix a Deployment's probes, shutdown and rollout.

The learner answers with the Deployment as YAML text. It is data, never run: parsed with
PyYAML's safe loader, bounded in size and depth and refused with anchors or aliases (a
"billion laughs" document expands exponentially), then checked against the Kubernetes
schema (strict) before any rule reads it. The public checks: a well-formed Deployment that
keeps the app's settings, and the probe rule; each hidden check is one more practice of
section 08 (`opslab.k8s_practice.findings`), judged with this checkpoint's numbers.
"""

from __future__ import annotations

from typing import Any

import yaml

from opslab import k8s, k8s_practice
from opslab.grading.common import CheckFailed, friendly, require_answer

MAX_BYTES = 64 * 1024
MAX_DEPTH = 30
# The app of this checkpoint: its settings are given, not the learner's to change.
SETTINGS = {"DRAIN_SECONDS": 3.0, "SHUTDOWN_TIMEOUT": 20.0}
REPLICAS = 4
PROPAGATION_SECONDS = 5.0  # this cluster's routers learn an endpoint removal within 5 s
RULES = ("probes", "prestop", "grace", "rollout")
HINTS = {
    "probes": "liveness and startup ask /health (the process answers), readiness /ready",
    "prestop": f"routers take up to {PROPAGATION_SECONDS:g} s here: preStop plus the app's "
    "drain must cover it (`exec: {command: [/bin/sleep, N]}` or `sleep: {seconds: N}`)",
    "grace": "the grace period counts from the start of preStop: preStop + DRAIN_SECONDS + "
    f"SHUTDOWN_TIMEOUT + {k8s.MARGIN_SECONDS:g} s margin, rounded up",
    "rollout": "with maxUnavailable 0 (and maxSurge at least 1) no ready pod is given up "
    "before its replacement is ready",
}


def _refuse_shapes(text: str) -> None:
    """Anchors, aliases and deep nesting refused from the event stream, before any tree is
    built (PyYAML's composer recurses: a deep document would exhaust the stack)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise CheckFailed("Write the YAML out in full: anchors (&name) and aliases "
                              "(*name) are refused.")  # fmt: skip
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise CheckFailed(f"The YAML nests deeper than {MAX_DEPTH} levels.")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _where(error: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line: what it found, and on which line."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark else str(problem)


def parse(answer: Any) -> k8s.Manifest:
    """The one Deployment in the learner's YAML, schema-checked; CheckFailed says what is off."""
    require_answer(answer, "Deployment (YAML text)")
    if not isinstance(answer, str):
        raise CheckFailed(f"Give the Deployment as YAML text (a str), not {type(answer).__name__}.")
    if len(answer.encode()) > MAX_BYTES:
        raise CheckFailed(f"The YAML is over {MAX_BYTES // 1024} KiB: a Deployment is far smaller.")
    try:
        _refuse_shapes(answer)
        documents = list(yaml.safe_load_all(answer))
    except yaml.YAMLError as error:
        raise CheckFailed(f"The YAML does not parse: {_where(error)}") from None
    if len(documents) != 1:
        raise CheckFailed(f"Give exactly one YAML document (found {len(documents)}).")
    obj = documents[0]
    if not isinstance(obj, dict) or obj.get("kind") != "Deployment":
        raise CheckFailed("The document must be a Deployment (`kind: Deployment`).")
    errors = k8s.validate([{**obj, "_file": "answer"}])
    if errors:
        raise CheckFailed(f"The Kubernetes schema refuses it: {errors[0].split(': ', 2)[-1]}")
    return obj


def _keeps_the_app(deployment: k8s.Manifest) -> dict[str, Any]:
    """The app container, once the answer is known to keep the given settings."""
    try:
        container = k8s.app_container([deployment])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
    except (LookupError, StopIteration, TypeError):
        raise CheckFailed("Keep the container named `app`.") from None
    for name, value in SETTINGS.items():
        try:
            same = float(env.get(name) or "nan") == value
        except ValueError:
            same = False
        if not same:
            raise CheckFailed(f"Keep the app's setting {name}={value:g}: the app needs it.")
    if deployment["spec"].get("replicas") != REPLICAS:
        raise CheckFailed(f"Keep `replicas: {REPLICAS}`.")
    return container


@friendly
def check_deployment(answer: Any, rule: str | None = None) -> None:
    """Well-formed and keeping the app (rule None); else the named practice holds."""
    deployment = parse(answer)
    _keeps_the_app(deployment)
    if rule is None:
        return
    try:
        found = k8s_practice.findings([deployment], propagation=PROPAGATION_SECONDS)
    except ValueError as error:  # a preStop hook of unknown length, surge and unavailable 0
        raise CheckFailed(f"{error}. Hint: {HINTS.get(rule, '')}.") from None
    broken = [message for name, message in found if name == rule]
    if broken:
        raise CheckFailed(f"{broken[0]}. Hint: {HINTS[rule]}.")
