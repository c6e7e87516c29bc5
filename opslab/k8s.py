"""The app's Kubernetes manifests, checked offline: schemas, arithmetic, secrets, checkov.

No cluster runs on the course's machines, so everything here is what can be known without
one: each manifest against the Kubernetes API schemas (PyPI `kubernetes-validate`, strict,
one pinned Kubernetes version), the grace period the app's shutdown needs (section 06's
arithmetic), the rolling update's pod counts step by step, secret values that must never
be in a manifest, and checkov's findings, each kept one explained in `checkov-skips.yaml`.
`opslab.k8s_play` runs the pod for real under `podman kube play`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from opslab.build import APP_DIR
from opslab.images import CACHE_DIR
from sample_app.config import Settings

log = logging.getLogger(__name__)

MANIFEST_DIR = APP_DIR / "ops" / "k8s"
# Pinned so a new kubernetes-validate cannot change what passes; the newest it bundles.
KUBERNETES_VERSION = "1.37.0"
# Section 06: room after DRAIN_SECONDS + SHUTDOWN_TIMEOUT for the lifespan shutdown and a
# slow machine (the app's defaults, 8 s of timeout in Docker's 10 s, leave 2 s).
MARGIN_SECONDS = 2.0
MAX_REPLICAS = 1000  # rollout_steps counts step by step: a bound on its work
CHECKOV_VENV = CACHE_DIR / "checkov-venv"
CHECKOV_REQUIREMENTS = MANIFEST_DIR / "requirements-checkov.txt"
CHECKOV_SKIPS = MANIFEST_DIR / "checkov-skips.yaml"
NOT_MANIFESTS = {CHECKOV_SKIPS.name}

Manifest = dict[str, Any]


# ----- loading ----------------------------------------------------------------------------


def manifest_dir() -> Path:
    """The manifests checked: the app's, or OPSLAB_K8S_DIR (a learner's or a broken copy)."""
    return Path(os.environ.get("OPSLAB_K8S_DIR") or MANIFEST_DIR)


def load(directory: Path | None = None) -> list[Manifest]:
    """Every object of every `*.yaml` in `directory`, each tagged with its file."""
    objects = []
    for path in sorted((directory or manifest_dir()).glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                objects.append({**obj, "_file": path.name})
    return objects


def find(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one object of `kind` (and `name`): a test names what it checks, not a position."""
    found = [o for o in objects if o.get("kind") == kind and name in (None, _name(o))]
    if len(found) != 1:
        raise LookupError(f"{len(found)} objects of kind {kind} named {name or 'any'}")
    return found[0]


def _name(obj: Manifest) -> str:
    return str(obj.get("metadata", {}).get("name", "?"))


def app_container(objects: list[Manifest]) -> dict[str, Any]:
    """The Deployment's `app` container, what every pod-level check reads."""
    spec = find(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "app")


# ----- arithmetic -------------------------------------------------------------------------


def grace_period(
    settings: Settings, prestop_seconds: float = 0.0, margin: float = MARGIN_SECONDS
) -> int:
    """The smallest terminationGracePeriodSeconds that lets the app finish before SIGKILL.

    Kubernetes starts the grace period before preStop, so the hook's time counts; then
    SIGTERM, the app's drain, uvicorn's wait of at most SHUTDOWN_TIMEOUT and a margin.
    """
    total = prestop_seconds + settings.drain_seconds + settings.shutdown_timeout + margin
    return math.ceil(total)


def container_settings(container: dict[str, Any]) -> Settings:
    """The app's Settings from the container's literal `env` (valueFrom entries skipped)."""
    fields = Settings.model_fields
    values = {
        e["name"].lower(): e["value"]
        for e in container.get("env", [])
        if "value" in e and e["name"].lower() in fields
    }
    return Settings(_env_file=None, **values)


def prestop_seconds(container: dict[str, Any]) -> float:
    """How long the preStop hook holds SIGTERM back: `sleep N` (exec) or the sleep action."""
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if command and Path(command[0]).name == "sleep" and len(command) == 2:
        return float(command[1])
    if hook:
        raise ValueError(f"cannot tell how long this preStop hook takes: {hook}")
    return 0.0


def _resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    """An int, or a percentage of replicas (Kubernetes rounds surge up, unavailable down)."""
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def rollout_steps(
    replicas: int, max_surge: int | str, max_unavailable: int | str
) -> list[dict[str, int]]:
    """The rolling update as the Deployment controller does it: pod counts at each step.

    Each step creates new pods (up to replicas + maxSurge in all), removes old ones while
    at least replicas - maxUnavailable stay ready, then the new pods become ready.
    `terminating` are the old pods going through preStop and the drain: the controller
    no longer counts them, so the machine briefly runs more than replicas + maxSurge.
    """
    if not 0 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas {replicas}: this model counts 0 to {MAX_REPLICAS}")
    surge = _resolve(max_surge, replicas, round_up=True)
    unavailable = _resolve(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        if max_surge == 0 and max_unavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0 (no progress)")
        unavailable = 1  # what Kubernetes does when both percentages round to 0
    old, new, ready_new = replicas, 0, 0
    rows = [_row(0, old, new, ready_new, 0)]
    while old or ready_new < replicas:
        removed = max(0, min(old, old + ready_new - (replicas - unavailable)))
        old -= removed
        new += max(0, min(replicas + surge - old - new, replicas - new))
        rows.append(_row(len(rows), old, new, ready_new, removed))
        if new > ready_new:  # the new pods pass their readiness probe
            ready_new = new
            rows.append(_row(len(rows), old, new, ready_new, 0))
    return rows


def _row(step: int, old: int, new: int, ready_new: int, terminating: int) -> dict[str, int]:
    return {
        "step": step,
        "old": old,
        "new": new,
        "ready": old + ready_new,
        "total": old + new,
        "terminating": terminating,
    }


# ----- validation -------------------------------------------------------------------------


def validate(objects: list[Manifest], version: str = KUBERNETES_VERSION) -> list[str]:
    """Schema errors, strict (an unknown field is an error), one line per object."""
    import kubernetes_validate  # here: its bundled schemas are slow to import (caps reads us)

    errors = []
    for obj in objects:
        data = {k: v for k, v in obj.items() if k != "_file"}
        where = f"{obj.get('_file', '?')}: {obj.get('kind')}/{_name(obj)}"
        try:
            kubernetes_validate.validate(data, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no schema (a CRD?) for {data.get('apiVersion')}")
    return errors


def secret_setting_names() -> set[str]:
    """The env names of the app's secret settings (SecretStr, SecretUrl), from its Settings."""
    return {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "Secret" in str(field.annotation)
    }


SECRET_WORDS = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|DSN|CREDENTIAL")


def secret_values(objects: list[Manifest]) -> list[str]:
    """Every place a manifest carries a secret's value instead of a reference to a Secret."""
    found = []
    names = secret_setting_names()
    for obj in objects:
        where = f"{obj.get('_file', '?')}: {obj.get('kind')}/{_name(obj)}"
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            found.append(f"{where}: a Secret with its values (create it at deploy time)")
        if obj.get("kind") == "ConfigMap":
            found += [f"{where}: key {k}" for k in obj.get("data") or {} if _secretish(k, names)]
        for env in _all_env(obj):
            if "value" in env and _secretish(env["name"], names):
                found.append(f"{where}: env {env['name']} has a value (use a secret reference)")
    return found


def _secretish(name: str, secret_names: set[str]) -> bool:
    upper = name.upper()
    if upper.endswith(("_DIR", "_FILE", "_PATH")):  # where secrets are (SECRETS_DIR): not one
        return False
    return upper in secret_names or bool(SECRET_WORDS.search(upper))


def _all_env(obj: Manifest) -> list[dict[str, Any]]:
    """Every env entry of every container in a Pod or a pod template."""
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    return [env for c in containers for env in c.get("env", [])]


# ----- checkov ----------------------------------------------------------------------------


def checkov_binary(venv: Path = CHECKOV_VENV) -> Path:
    """checkov in a venv of its own (its many pinned dependencies stay out of .venv)."""
    binary = venv / "bin" / "checkov"
    if not binary.is_file():
        log.info("installing checkov into %s (about 20 s)", venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--requirement", str(CHECKOV_REQUIREMENTS)], check=True)
    return binary


def checkov_findings(directory: Path | None = None) -> list[dict[str, str]]:
    """checkov's failed checks for the manifests, offline (`--skip-download`)."""
    where = str(directory or manifest_dir())
    done = subprocess.run(
        [str(checkov_binary()), "--directory", where, "--framework", "kubernetes",
         "--output", "json", "--quiet", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1):  # 1: findings
        raise RuntimeError(f"checkov failed ({done.returncode}):\n{done.stderr[-2000:]}")
    reports = json.loads(done.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    return [
        {"id": f["check_id"], "file": f["file_path"].lstrip("/"), "resource": f["resource"],
         "name": f["check_name"]}
        for report in reports for f in report.get("results", {}).get("failed_checks", [])
    ]  # fmt: skip


def load_skips(path: Path | None = None) -> list[dict[str, Any]]:
    """The findings kept on purpose: check id, optional files, and the reason."""
    path = path or manifest_dir() / CHECKOV_SKIPS.name
    skips = yaml.safe_load(path.read_text()) or []
    for skip in skips:
        if not str(skip.get("reason", "")).strip():
            raise ValueError(f"checkov skip {skip.get('id')} has no reason")
    return list(skips)


def _covers(skip: dict[str, Any], finding: dict[str, str]) -> bool:
    return skip["id"] == finding["id"] and finding["file"] in skip.get("files", [finding["file"]])


def unexplained(findings: list[dict[str, str]], skips: list[dict[str, Any]]) -> list[str]:
    """Findings no skip explains, and skips that explain nothing (stale): both must be empty."""
    problems = [
        f"{f['id']} {f['file']} {f['resource']}: {f['name']}"
        for f in findings
        if not any(_covers(s, f) for s in skips)
    ]
    problems += [
        f"stale skip {s['id']}: no finding left" for s in skips
        if not any(_covers(s, f) for f in findings)
    ]  # fmt: skip
    return problems
