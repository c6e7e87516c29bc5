"""Checkpoint 08: the master scores full marks and the given Deployment 0, each rule fails for
its own mistake, and hostile YAML gets one verdict line, fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opslab.grading import k8s_checks
from opslab.grading.common import Failed

from .conftest import answers, grade_solved_and_untouched, master_score, scores

ROOT = Path(__file__).resolve().parents[2]
STEM = "checkpoint-08-kubernetes"


@pytest.fixture(scope="module")
def solved() -> str:
    return answers(ROOT / "solutions" / f"{STEM}.ipynb")["manifest"]


@pytest.fixture(scope="module")
def given() -> str:
    return answers(ROOT / "exercises" / f"{STEM}.ipynb")["manifest"]


def _edit(text: str, change) -> str:
    """The YAML with `change(deployment, container)` applied."""
    deployment = yaml.safe_load(text)
    change(deployment, deployment["spec"]["template"]["spec"]["containers"][0])
    return yaml.safe_dump(deployment)


@pytest.mark.slow
def test_checkpoint_08_graded_in_the_sandbox_full_marks_and_zero(tmp_path: Path) -> None:
    grades = grade_solved_and_untouched((STEM,), tmp_path)
    solved, untouched = grades[STEM, "solved"], grades[STEM, "untouched"]
    assert "error" not in solved
    assert "error" not in untouched
    assert scores(solved) == (4, 4), solved
    assert scores(untouched) == (0, 4), untouched


def test_master_passes_every_rule_and_the_given_fails_every_rule(solved: str, given: str) -> None:
    assert master_score(f"{STEM}.ipynb", "q1", manifest=solved) == (4, 4)
    assert master_score(f"{STEM}.ipynb", "q1", manifest=given) == (0, 4)
    assert k8s_checks.check_deployment(given) is None  # well-formed: only the rules fail
    for rule in k8s_checks.RULES:
        assert isinstance(k8s_checks.check_deployment(given, rule), Failed), rule


def _liveness_on_ready(d, c) -> None:
    c["livenessProbe"]["httpGet"]["path"] = "/ready"


def _no_prestop(d, c) -> None:
    del c["lifecycle"]


def _grace_without_prestop(d, c) -> None:  # drain + timeout + margin: the hook forgotten
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 25


def _unavailable_one(d, c) -> None:
    d["spec"]["strategy"]["rollingUpdate"].update(maxSurge=0, maxUnavailable=1)


@pytest.mark.parametrize(
    ("change", "rule", "says"),
    [
        (_liveness_on_ready, "probes", "livenessProbe on /ready"),
        (_no_prestop, "prestop", "preStop 0 s + DRAIN_SECONDS 3 s < 5 s"),
        (_grace_without_prestop, "grace", "terminationGracePeriodSeconds 25 < 27"),
        (_unavailable_one, "rollout", "down to 3 ready of 4"),
    ],
)
def test_each_mistake_fails_its_own_rule_only(solved: str, change, rule: str, says: str) -> None:
    answer = _edit(solved, change)
    failed = {r: k8s_checks.check_deployment(answer, r) for r in k8s_checks.RULES}
    assert says in failed[rule].message
    assert "Hint:" in failed[rule].message
    assert [r for r in k8s_checks.RULES if r != rule and failed[r] is not None] == []


def test_a_huge_grace_period_fails_the_grace_rule(solved: str) -> None:
    def huge(d, c) -> None:
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3600

    assert "over 60 s above" in k8s_checks.check_deployment(_edit(solved, huge), "grace").message


def test_changing_the_apps_settings_or_replicas_is_refused(solved: str) -> None:
    def shorter_drain(d, c) -> None:
        next(e for e in c["env"] if e["name"] == "DRAIN_SECONDS")["value"] = "0"

    def more_replicas(d, c) -> None:
        d["spec"]["replicas"] = 10**9  # would also make the rollout model count for ever

    assert "DRAIN_SECONDS=3" in repr(k8s_checks.check_deployment(_edit(solved, shorter_drain)))
    assert "replicas: 4" in repr(
        k8s_checks.check_deployment(_edit(solved, more_replicas), "rollout")
    )


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (..., "Not answered yet"),
        ({"kind": "Deployment"}, "YAML text (a str), not dict"),
        ("x: " + "y" * 70_000, "over 64 KiB"),
        ("kind: [", "does not parse"),
        ("", "exactly one YAML document (found 0)"),
        ("kind: Deployment\n---\nkind: Service\n", "exactly one YAML document (found 2)"),
        ("kind: Service\n", "must be a Deployment"),
        ("apiVersion: apps/v1\nkind: Deployment\nspec: {replica: 4}\n", "schema refuses"),
    ],
)
def test_malformed_answers_get_one_line(answer, says: str) -> None:
    result = k8s_checks.check_deployment(answer)
    assert isinstance(result, Failed)
    assert says in result.message
    assert "\n" not in result.message


def test_a_billion_laughs_document_is_refused_before_it_expands() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "\n".join(lines) + "\nkind: Deployment\n"  # 10**9 strings once expanded
    result = k8s_checks.check_deployment(bomb)  # refused at its first anchor: nothing expands
    assert "anchors (&name) and aliases" in result.message


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    for deep in (
        "[" * 20_000 + "]" * 20_000,
        "a:\n" + "".join(f"{' ' * i}- \n" for i in range(1, 60)),
    ):
        result = k8s_checks.check_deployment(deep)
        assert isinstance(result, Failed)
        assert "nests deeper than 30 levels" in result.message
