"""The z2jh values for the course: generated from capacity, valid Kubernetes, z2jh's own keys.

Offline: the Pod the values imply is checked with kubernetes-validate (its bundled
Kubernetes schemas, strict: unknown fields fail); the values' keys with a hand-written subset
of the chart's schema; and, when the chart is on disk (`OPSLAB_Z2JH_CHART=.../jupyterhub`,
from `helm pull jupyterhub/jupyterhub --version 4.4.0 --untar`), with the chart's own
values.schema.yaml over its values.yaml, as `helm install` checks them.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
import yaml

from opslab import hub_image
from opslab.caps import strict_mode

CONFIG = hub_image.Z2JH_DIR / "config.yaml"
CAPACITY = hub_image.Z2JH_DIR / "capacity.json"
KUBERNETES = "1.32.0"  # the oldest Kubernetes z2jh's main branch supports (kubeVersion)
REPO = "https://github.com/ORG/opslab-course"

_BYTES, _CORES = {"type": ["number", "string"]}, {"type": ["number"]}
_MEMORY = {"type": "object", "additionalProperties": False,
           "properties": {"limit": _BYTES, "guarantee": _BYTES}}  # fmt: skip
_CPU = {"type": "object", "additionalProperties": False,
        "properties": {"limit": _CORES, "guarantee": _CORES}}  # fmt: skip
_IMAGE = {
    "type": "object", "additionalProperties": False, "required": ["name", "tag"],
    "properties": {
        "name": {"type": "string"}, "tag": {"type": "string"},
        "pullPolicy": {"enum": [None, "", "IfNotPresent", "Always", "Never"]},
    },
}  # fmt: skip
# The keys of z2jh's values.schema.yaml the course sets, with the chart's types; every level
# closed (additionalProperties: false), as the chart's schema is.
SUBSET = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "singleuser": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "image": _IMAGE,
                "cmd": {"type": ["array", "string", "null"]},
                "defaultUrl": {"type": ["string", "null"]},
                "uid": {"type": ["integer", "null"]},
                "fsGid": {"type": ["integer", "null"]},
                "extraEnv": {"type": ["object", "array"]},
                "memory": _MEMORY,
                "cpu": _CPU,
            },
        },
        "cull": {
            "type": "object",
            "additionalProperties": False,
            "required": ["enabled"],
            "properties": {
                "enabled": {"type": "boolean"},
                "users": {"type": ["boolean", "null"]},
                "timeout": {"type": ["integer", "null"]},
                "every": {"type": ["integer", "null"]},
            },
        },
    },
}


def kubernetes_validate() -> ModuleType:
    """PyPI kubernetes-validate (a test dependency): missing is a skip, in strict mode an error."""
    if strict_mode():
        import kubernetes_validate as module

        return module
    return pytest.importorskip("kubernetes_validate")


def committed_values() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def nbgitpuller_values() -> dict:
    capacity = json.loads(CAPACITY.read_text())
    return hub_image.z2jh_values(capacity, image="registry.example/opslab", tag="1", repo=REPO)


def test_config_yaml_matches_generation_from_committed_capacity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert hub_image.main(["z2jh", "--capacity", str(CAPACITY)]) == 0
    generated = capsys.readouterr().out
    assert CONFIG.read_text() == generated, (
        "hub/z2jh/config.yaml is stale: python -m opslab.hub_image z2jh "
        "--capacity hub/z2jh/capacity.json > hub/z2jh/config.yaml"
    )


def test_resources_from_rounds_measured_figures_up_with_headroom() -> None:
    figures = {"per_learner": {"peak_mb": 900.0, "mean_cores": 0.27, "peak_cores": 1.2}}
    assert hub_image.resources_from(figures) == {
        "memory": {"limit": "1408M", "guarantee": "960M"},
        "cpu": {"limit": 1.5, "guarantee": 0.3},
    }


@pytest.mark.parametrize("peak_mb", [1.0, 63.9, 64.0, 500.0, 2047.5, 8000.0])
def test_resources_from_never_guarantees_more_than_the_limit(peak_mb: float) -> None:
    figures = {"per_learner": {"peak_mb": peak_mb, "mean_cores": 0.0, "peak_cores": 0.1}}
    resources = hub_image.resources_from(figures)
    memory = {k: hub_image.bytes_of(v) for k, v in resources["memory"].items()}
    assert peak_mb * 2**20 <= memory["guarantee"] <= memory["limit"]
    assert 0 < resources["cpu"]["guarantee"] <= resources["cpu"]["limit"]


def test_config_lands_on_the_first_notebook_and_culls_idle_servers() -> None:
    values = committed_values()
    assert values["singleuser"]["defaultUrl"] == "/lab/tree/opslab-course/notebooks/00-setup.ipynb"
    assert values["singleuser"]["extraEnv"] == {"OPSLAB_SEED_COURSE": "1"}
    assert values["cull"]["enabled"] is True
    assert 0 < values["cull"]["every"] < values["cull"]["timeout"]
    assert "solutions" not in CONFIG.read_text()


def test_nbgitpuller_variant_pulls_the_learner_repository_into_the_course_folder() -> None:
    singleuser = nbgitpuller_values()["singleuser"]
    assert singleuser["defaultUrl"] == (
        "/git-pull?repo=https%3A%2F%2Fgithub.com%2FORG%2Fopslab-course&branch=main"
        "&targetpath=opslab-course&urlpath=lab%2Ftree%2Fopslab-course%2Fnotebooks%2F00-setup.ipynb"
    )
    assert singleuser["extraEnv"] == {"OPSLAB_SEED_COURSE": "0"}  # nbgitpuller's clone, only


@pytest.mark.parametrize("values", [committed_values, nbgitpuller_values])
def test_singleuser_pod_of_the_values_is_valid_kubernetes(values: Callable[[], dict]) -> None:
    validator = kubernetes_validate()
    pod = hub_image.singleuser_pod(values())
    validator.validate(pod, KUBERNETES, strict=True)
    container = pod["spec"]["containers"][0]
    assert (
        container["resources"]["requests"]["memory"] <= container["resources"]["limits"]["memory"]
    )
    assert container["securityContext"]["runAsUser"] == 1000


def test_kubernetes_validation_rejects_a_misspelt_pod_field() -> None:
    validator = kubernetes_validate()
    pod = hub_image.singleuser_pod(committed_values())
    pod["spec"]["containers"][0]["resource"] = pod["spec"]["containers"][0].pop("resources")
    with pytest.raises(validator.ValidationError, match="'resource' was unexpected"):
        validator.validate(pod, KUBERNETES, strict=True)


@pytest.mark.parametrize("values", [committed_values, nbgitpuller_values])
def test_values_keys_are_z2jh_keys_of_the_right_types(values: Callable[[], dict]) -> None:
    jsonschema.validate(values(), SUBSET)


def test_subset_schema_rejects_a_misspelt_key() -> None:
    broken = committed_values()
    broken["singleuser"]["defaultURL"] = broken["singleuser"].pop("defaultUrl")
    with pytest.raises(jsonschema.ValidationError, match="defaultURL"):
        jsonschema.validate(broken, SUBSET)


def helm_merge(defaults: dict, overrides: dict) -> dict:
    """Helm's values merge: maps merge key by key, anything else replaces, null deletes."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.mark.parametrize("values", [committed_values, nbgitpuller_values])
def test_values_pass_the_z2jh_charts_own_schema(values: Callable[[], dict]) -> None:
    chart = Path(os.environ.get("OPSLAB_Z2JH_CHART", "/nonexistent"))
    if not (chart / "values.schema.yaml").is_file():
        pytest.skip("set OPSLAB_Z2JH_CHART to an unpacked z2jh chart (helm pull --untar)")
    schema = yaml.safe_load((chart / "values.schema.yaml").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(helm_merge(defaults, values()))
