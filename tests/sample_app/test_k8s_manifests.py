"""The Kubernetes manifests, checked offline: schemas, shutdown arithmetic, probes, secrets."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from opslab import k8s
from opslab.caps import strict_mode
from sample_app.config import Settings


@pytest.fixture(scope="module")
def objects() -> list[k8s.Manifest]:
    return k8s.load()


def test_manifests_validate_against_the_pinned_kubernetes_schemas(objects) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "Ingress", "PodDisruptionBudget"} <= kinds
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceAccount"} <= kinds
    assert k8s.validate(objects) == []


def test_validate_rejects_an_unknown_field_and_a_crd(objects) -> None:
    broken = copy.deepcopy(k8s.find(objects, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # lower-case p
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "sample-app"}, "spec": {}}  # fmt: skip
    errors = k8s.validate([broken, monitor])
    assert len(errors) == 2
    assert "livenessprobe" in errors[0]
    assert "no schema" in errors[1]


def test_grace_period_covers_prestop_drain_and_shutdown_timeout(objects) -> None:
    container = k8s.app_container(objects)
    settings = k8s.container_settings(container)
    prestop = k8s.prestop_seconds(container)
    pod = k8s.find(objects, "Deployment")["spec"]["template"]["spec"]
    assert prestop > 0, "no preStop: SIGTERM races the endpoint removal"
    assert settings.drain_seconds > 0
    needed = prestop + settings.drain_seconds + settings.shutdown_timeout + k8s.MARGIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert pod["terminationGracePeriodSeconds"] == k8s.grace_period(settings, prestop)


def test_grace_period_arithmetic_matches_section_06() -> None:
    defaults = Settings(_env_file=None, app_env="development")
    assert k8s.grace_period(defaults) == 10  # SHUTDOWN_TIMEOUT 8 + 2: Docker's 10 s
    longer = Settings(_env_file=None, app_env="development", drain_seconds=1.5)
    assert k8s.grace_period(longer, prestop_seconds=5) == 17  # 16.5, rounded up


def test_a_grace_period_shorter_than_the_drain_is_caught(objects) -> None:
    container = copy.deepcopy(k8s.app_container(objects))
    for env in container["env"]:
        if env["name"] == "DRAIN_SECONDS":
            env["value"] = "10"
    pod = k8s.find(objects, "Deployment")["spec"]["template"]["spec"]
    settings = k8s.container_settings(container)
    assert (
        k8s.grace_period(settings, k8s.prestop_seconds(container))
        > pod["terminationGracePeriodSeconds"]
    )


def test_probes_point_at_real_routes_and_liveness_skips_the_database(
    objects, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = k8s.app_container(objects)
    paths = {kind: container[kind]["httpGet"]["path"]
             for kind in ("startupProbe", "livenessProbe", "readinessProbe")}  # fmt: skip
    assert all(client.get(path).status_code == 200 for path in paths.values())
    # With the database down, readiness must fail and liveness must not: a liveness probe
    # that touched the database would restart every pod during a database outage.
    monkeypatch.setattr(client.app.state.db, "ping", lambda: False)
    assert client.get(paths["readinessProbe"]).status_code == 503
    assert client.get(paths["livenessProbe"]).status_code == 200
    assert client.get(paths["startupProbe"]).status_code == 200
    port_names = {p["name"] for p in container["ports"]}
    assert all(container[k]["httpGet"]["port"] in port_names for k in paths)


def test_rollout_never_goes_below_the_wanted_replicas(objects) -> None:
    deployment = k8s.find(objects, "Deployment")
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    replicas = deployment["spec"]["replicas"]
    steps = k8s.rollout_steps(replicas, strategy["maxSurge"], strategy["maxUnavailable"])
    assert all(step["ready"] >= replicas for step in steps)
    assert max(step["total"] for step in steps) == replicas + strategy["maxSurge"]
    assert steps[-1] == {**steps[-1], "old": 0, "new": replicas, "ready": replicas}
    assert k8s.find(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == replicas


def test_rollout_with_max_unavailable_drops_below_and_percentages_round() -> None:
    assert min(s["ready"] for s in k8s.rollout_steps(2, 0, 1)) == 1
    four = k8s.rollout_steps(4, "25%", "25%")  # surge rounds up to 1, unavailable down to 1
    assert four[1] == {"step": 1, "old": 3, "new": 2, "ready": 3, "total": 5, "terminating": 1}
    with pytest.raises(ValueError, match="both be 0"):
        k8s.rollout_steps(2, 0, 0)


def test_manifests_hold_no_secret_values(objects) -> None:
    assert k8s.secret_values(objects) == []
    volumes = k8s.find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    secret = next(v["secret"] for v in volumes if "secret" in v)
    env = {e["name"]: e.get("value") for e in k8s.app_container(objects)["env"]}
    mounts = {m["name"]: m["mountPath"] for m in k8s.app_container(objects)["volumeMounts"]}
    assert secret["secretName"] == "sample-app"
    assert env["SECRETS_DIR"] == mounts["secrets"]  # the app reads its secrets from there


def test_an_inline_secret_value_is_caught(objects) -> None:
    attack = copy.deepcopy(k8s.find(objects, "Deployment"))
    attack["spec"]["template"]["spec"]["containers"][0]["env"] += [
        {"name": "CSRF_SECRET", "value": "x" * 48},
        {"name": "DATABASE_URL", "value": "postgresql://app:hunter2@db/app"},
        {"name": "STRIPE_API_KEY", "value": "sk_live_123"},
    ]
    leaked = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sample-app"},
              "stringData": {"csrf_secret": "y" * 48}}  # fmt: skip
    found = k8s.secret_values([attack, leaked])
    assert len(found) == 4
    assert all(name in " ".join(found) for name in ("CSRF_SECRET", "DATABASE_URL", "API_KEY"))


def test_ingress_matches_the_nginx_template(objects, client: TestClient) -> None:
    template = (k8s.MANIFEST_DIR.parent / "nginx" / "app.conf.j2").read_text()  # the real one
    assert "client_max_body_size 1m;" in template
    main = k8s.find(objects, "Ingress", "sample-app")["metadata"]["annotations"]
    stream = k8s.find(objects, "Ingress", "sample-app-stream")
    notes = stream["metadata"]["annotations"]
    assert main["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert Settings(_env_file=None).max_body_bytes == 1024 * 1024
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600  # 1h
    assert stream["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/chat/stream"
    assert "location = /chat/stream" in template
    assert client.post("/api/todos", content=b"x" * (1024 * 1024 + 1)).status_code == 413


def test_pod_runs_as_non_root_on_a_read_only_root(objects) -> None:
    pod = k8s.find(objects, "Deployment")["spec"]["template"]["spec"]
    container = k8s.app_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(k8s.container_settings(container).data_dir) in mounts
    assert "/tmp" in mounts
    assert {"requests", "limits"} <= container["resources"].keys()


def test_checkov_has_no_unexplained_finding() -> None:
    try:
        findings = k8s.checkov_findings()
    except (OSError, RuntimeError) as error:
        if strict_mode():
            raise
        pytest.skip(f"checkov could not run: {error}")
    assert k8s.unexplained(findings, k8s.load_skips()) == []


def test_checkov_unexplained_and_stale_skips_are_reported() -> None:
    finding = {"id": "CKV_K8S_8", "file": "deployment.yaml", "resource": "d", "name": "probe"}
    skip = {"id": "CKV_K8S_43", "files": ["deployment.yaml"], "reason": "digest"}
    assert k8s.unexplained([finding], [skip]) == [
        "CKV_K8S_8 deployment.yaml d: probe",
        "stale skip CKV_K8S_43: no finding left",
    ]


def test_a_broken_manifest_copy_fails_the_checks(tmp_path: Path) -> None:
    copy_dir = tmp_path / "k8s"
    shutil.copytree(k8s.MANIFEST_DIR, copy_dir)
    path = copy_dir / "deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 30
    pod["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/ready"
    pod["containers"][0]["env"].append({"name": "CSRF_SECRET", "value": "z" * 48})
    path.write_text(yaml.safe_dump(deployment))
    broken = k8s.load(copy_dir)
    container = k8s.app_container(broken)
    settings = k8s.container_settings(container)
    assert k8s.grace_period(settings, k8s.prestop_seconds(container)) != 30
    assert container["livenessProbe"]["httpGet"]["path"] != "/health"
    assert k8s.secret_values(broken) != []
