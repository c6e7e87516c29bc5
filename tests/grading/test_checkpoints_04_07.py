"""Checkpoints 04-07: masters score full marks, untouched exercises 0; the checks themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from opslab.grading import deploy_checks, lifecycle_checks, metrics_checks, precedence_checks
from opslab.grading.common import Failed
from opslab.grading.keys import precedence as keys

from .conftest import answers, grade_solved_and_untouched, master_score, scores

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = (
    "checkpoint-04-config",
    "checkpoint-05-metrics",
    "checkpoint-06-shutdown",
    "checkpoint-07-deploy",
)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, object]]:
    """Each checkpoint solved (master's answers) and untouched, graded by otter, two at a time."""
    return grade_solved_and_untouched(CHECKPOINTS, tmp_path_factory.mktemp("solved"))


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoint_solution_full_marks_exercise_zero(graded: dict, name: str) -> None:
    solved, untouched = graded[name, "solved"], graded[name, "untouched"]
    assert "error" not in solved
    assert "error" not in untouched
    earned, possible = scores(solved)
    assert possible > 0
    assert earned == possible, solved
    assert scores(untouched) == (0, possible), untouched


@pytest.fixture(scope="module")
def master05() -> dict:
    return answers(ROOT / "solutions" / "checkpoint-05-metrics.ipynb")


@pytest.fixture(scope="module")
def given05() -> dict:
    return answers(ROOT / "exercises" / "checkpoint-05-metrics.ipynb")


# ------------------------------------------------------------------ 04 precedence


@pytest.mark.parametrize("case", sorted({**precedence_checks.PUBLIC_CASES, **keys.HIDDEN_CASES}))
def test_check_resolve_reference_passes_every_case(case: str) -> None:
    assert precedence_checks.check_resolve(keys.reference_resolve, case) is None


def test_check_resolve_unanswered_says_not_answered() -> None:
    def resolve(defaults, dotenv_text, environ, overrides): ...

    assert "Not answered yet" in repr(precedence_checks.check_resolve(resolve))
    assert "Not answered yet" in repr(precedence_checks.check_resolve(...))


def test_check_resolve_dotenv_over_environment_fails_with_hint() -> None:
    def resolve(defaults, dotenv_text, environ, overrides):
        dotenv = keys.parse_dotenv(dotenv_text)
        return {
            k: overrides.get(k, dotenv.get(k.upper(), environ.get(k.upper(), v)))
            for k, v in defaults.items()
        }

    result = precedence_checks.check_resolve(resolve, "env-beats-dotenv")
    assert isinstance(result, Failed)
    assert "port is '7000', expected '8080'" in result.message


def test_check_resolve_whole_environment_copied_fails() -> None:
    def resolve(defaults, dotenv_text, environ, overrides):
        return {**defaults, **{k.lower(): v for k, v in environ.items()}, **overrides}

    result = precedence_checks.check_resolve(resolve, "unknown-names")
    assert isinstance(result, Failed)
    assert "extra ['path']" in result.message


def test_check_resolve_hanging_or_crashing_code_gives_message() -> None:
    def hangs(*args):
        while True:
            pass

    def crashes(*args):
        raise KeyError("PORT")

    precedence_checks.LIMIT_SECONDS, saved = 0.5, precedence_checks.LIMIT_SECONDS
    try:
        assert "still running" in repr(precedence_checks.check_resolve(hangs))
    finally:
        precedence_checks.LIMIT_SECONDS = saved
    assert "raised KeyError" in repr(precedence_checks.check_resolve(crashes))


def test_parse_dotenv_comments_quotes_first_equals() -> None:
    text = "# c\n\n A = '1' \nB=x=y\nC=\"q\"\n#D=4\nnoequals\n"
    assert keys.parse_dotenv(text) == {"A": "1", "B": "x=y", "C": "q"}


# ------------------------------------------------------------------ 05 metrics

METRIC_CHECKS = (
    metrics_checks.check_route_labels,
    metrics_checks.check_nested_template,
    metrics_checks.check_unmatched,
    metrics_checks.check_matched_not_found,
)


@pytest.mark.parametrize("check", METRIC_CHECKS, ids=lambda c: c.__name__)
def test_metrics_checks_master_passes_given_fails(check, master05: dict, given05: dict) -> None:
    assert check(master05["MetricsMiddleware"]) is None
    result = check(given05["MetricsMiddleware"])
    assert isinstance(result, Failed)
    assert "Traceback" not in result.message


def test_check_route_labels_raw_path_reports_series_count(given05: dict) -> None:
    result = metrics_checks.check_route_labels(given05["MetricsMiddleware"])
    assert "made 50 series" in repr(result)


def test_check_route_labels_broken_middleware_gives_message() -> None:
    class Broken:
        def __init__(self, app, requests_total) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            raise RuntimeError("boom")

    assert "raised RuntimeError" in repr(metrics_checks.check_route_labels(Broken))
    assert "Not answered yet" in repr(metrics_checks.check_route_labels(...))


# ------------------------------------------------------------------ 06 lifecycle


@pytest.fixture(scope="module")
def servers06() -> tuple[str, str]:
    solved = answers(ROOT / "solutions" / "checkpoint-06-shutdown.ipynb")["server_source"]
    given = answers(ROOT / "exercises" / "checkpoint-06-shutdown.ipynb")["server_source"]
    return solved, given


def test_check_ready_drains_master_passes_given_fails(servers06: tuple[str, str]) -> None:
    solved, given = servers06
    assert lifecycle_checks.check_ready_drains(solved, drain=1.0) is None
    result = lifecycle_checks.check_ready_drains(given)
    assert isinstance(result, Failed)
    assert "stopped answering at once" in result.message
    assert "Not answered yet" in result.message


def test_check_drain_then_exit_master_passes(servers06: tuple[str, str]) -> None:
    assert lifecycle_checks.check_drain_then_exit(servers06[0], drain=1.0) is None


def test_check_drain_then_exit_no_drain_delay_fails(servers06: tuple[str, str]) -> None:
    hasty = servers06[0].replace("time.sleep(drain_seconds)", "time.sleep(0.1)")
    result = lifecycle_checks.check_drain_then_exit(hasty, drain=2.0)
    assert isinstance(result, Failed)
    assert "no longer answered" in result.message


def test_check_drain_then_exit_never_stopping_fails_in_bound(servers06: tuple[str, str]) -> None:
    stuck = servers06[0].replace("server.shutdown()  #", "pass  #")
    result = lifecycle_checks.check_drain_then_exit(stuck, drain=0.5, bound=1.0)
    assert isinstance(result, Failed)
    assert "still running" in result.message


def test_check_ready_drains_health_failing_while_draining(servers06: tuple[str, str]) -> None:
    sick = servers06[0].replace(
        'if self.path == "/health":', 'if self.path == "/health" and not DRAINING.is_set():'
    )
    result = lifecycle_checks.check_ready_drains(sick, drain=1.0)
    assert isinstance(result, Failed)
    assert "/health answered 404" in result.message


def test_check_ready_drains_crash_at_start_and_unanswered() -> None:
    assert "exited at start" in repr(lifecycle_checks.check_ready_drains("raise SystemExit(3)"))
    assert "Not answered yet" in repr(lifecycle_checks.check_ready_drains(...))


# ------------------------------------------------------------------ 07 deploy

SAFE = [
    "start green",
    "wait for green /ready",
    "check green /version",
    "render nginx config for green",
    "nginx -t",
    "nginx reload",
    "confirm traffic reaches green",
    "stop blue",
]


@pytest.mark.parametrize("rule", [None, *deploy_checks.RULES])
def test_check_steps_safe_order_passes(rule: str | None) -> None:
    assert deploy_checks.check_steps(SAFE, rule) is None


def test_check_steps_another_safe_order_passes() -> None:
    other = SAFE[3:5] + SAFE[:3] + SAFE[5:]  # render and test the config first: also fine
    assert all(deploy_checks.check_steps(other, rule) is None for rule in deploy_checks.RULES)


@pytest.mark.parametrize("rule", deploy_checks.RULES)
def test_check_steps_given_order_breaks_every_rule(rule: str) -> None:
    given = answers(ROOT / "exercises" / "checkpoint-07-deploy.ipynb")["steps"]
    assert deploy_checks.check_steps(given) is None
    assert isinstance(deploy_checks.check_steps(given, rule), Failed)


def test_check_steps_malformed_answers_get_messages() -> None:
    assert "Not answered yet" in repr(deploy_checks.check_steps(...))
    assert "Unknown step" in repr(deploy_checks.check_steps([*SAFE, "pray"]))
    assert "repeated ['stop blue']" in repr(deploy_checks.check_steps([*SAFE, "stop blue"]))
    assert "list of step names" in repr(deploy_checks.check_steps("start green"))


def test_check_route_labels_busy_loop_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    class Spins:
        def __init__(self, app, requests_total) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            while scope["type"] == "http":
                pass
            await self.app(scope, receive, send)

    monkeypatch.setattr(metrics_checks, "LIMIT_SECONDS", 1.0)
    assert "still running after 1 s" in repr(metrics_checks.check_route_labels(Spins))


def test_check_drain_then_exit_short_and_long_drains_master_passes(
    servers06: tuple[str, str],
) -> None:
    assert lifecycle_checks.check_drain_then_exit(servers06[0], drain=1.0) is None
    assert lifecycle_checks.check_drain_then_exit(servers06[0], drain=3.5) is None


@pytest.mark.parametrize("fixed", [1.6, 3.0])
def test_check_drain_then_exit_fixed_drain_fails_one_of_the_drains(
    servers06: tuple[str, str], fixed: float
) -> None:
    # Ignores DRAIN_SECONDS: too short for the long drain, or too long for the short one.
    ignores = servers06[0].replace("time.sleep(drain_seconds)", f"time.sleep({fixed})")
    short = lifecycle_checks.check_drain_then_exit(ignores, drain=1.0)
    long = lifecycle_checks.check_drain_then_exit(ignores, drain=3.5)
    failures = [r for r in (short, long) if isinstance(r, Failed)]
    assert failures, f"a fixed {fixed} s drain passed both"
    assert any("still running" in f.message or "no longer answered" in f.message for f in failures)


@pytest.mark.parametrize("fixed", [1.6, 3.0])
def test_master06_fixed_drain_loses_a_hidden_point(
    servers06: tuple[str, str], fixed: float
) -> None:
    ignores = servers06[0].replace("time.sleep(drain_seconds)", f"time.sleep({fixed})")
    earned, possible = master_score("checkpoint-06-shutdown.ipynb", "q1", server_source=ignores)
    assert possible == 4
    assert earned <= 3


def test_public_resolve_check_runs_without_the_answer_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The learner distribution has no keys: the public case checks, a hidden one waits."""
    assert precedence_checks.PUBLIC_ANSWERS["basic"] == keys.reference_resolve(
        *(
            dict(x) if isinstance(x, dict) else x
            for x in precedence_checks.PUBLIC_CASES["basic"][1:]
        )
    )
    monkeypatch.setitem(sys.modules, "opslab.grading.keys.precedence", None)
    assert precedence_checks.check_resolve(keys.reference_resolve, "basic") is None
    failed = precedence_checks.check_resolve(keys.reference_resolve, "overrides-win")
    assert "checked when your notebook is graded" in failed.message
