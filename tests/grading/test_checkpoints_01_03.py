"""Checkpoints 01-03: solutions score full marks, untouched exercises 0; the checks' messages."""

from __future__ import annotations

import hashlib
import sys

import pytest

from opslab.grading import build_checks, nginx_checks
from opslab.grading.common import Failed
from opslab.grading.keys import fingerprint

from .conftest import grade_solved_and_untouched, scores

CHECKPOINTS = ("checkpoint-01-build", "checkpoint-02-images", "checkpoint-03-nginx")


@pytest.fixture(scope="module")
def grades(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, object]]:
    """Every checkpoint graded twice (solved, untouched), two submissions at a time."""
    return grade_solved_and_untouched(CHECKPOINTS, tmp_path_factory.mktemp("solved"))


@pytest.mark.slow
@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_checkpoint_solution_full_marks_untouched_zero(grades: dict, stem: str) -> None:
    score, maximum = scores(grades[stem, "solved"])
    assert "error" not in grades[stem, "solved"]
    assert maximum > 0
    assert score == maximum
    score, maximum = scores(grades[stem, "untouched"])
    assert "error" not in grades[stem, "untouched"]
    assert maximum > 0
    assert score == 0
    assert grades[stem, "solved"]["seconds"] < 60


# ---------------------------------------------------------------- 01: fingerprinted_name


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def test_expected_name_hash_before_last_extension_of_the_file_name() -> None:
    h = _digest(b"x")
    assert fingerprint.expected_name("css/app.css", b"x") == f"css/app.{h}.css"
    assert fingerprint.expected_name("js/lib.min.js", b"x") == f"js/lib.min.{h}.js"
    assert fingerprint.expected_name("v1.2/CHANGES", b"x") == f"v1.2/CHANGES.{h}"


def test_check_fingerprint_reference_passes_naive_split_fails_with_hint() -> None:
    assert build_checks.check_fingerprint(fingerprint.expected_name, "v1.2/CHANGES", b"x") is None

    def naive(path: str, data: bytes) -> str:
        stem, _, suffix = path.rpartition(".")
        return f"{stem}.{_digest(data)}.{suffix}"

    result = build_checks.check_fingerprint(naive, "v1.2/CHANGES", b"x")
    assert isinstance(result, Failed)
    assert "Hint" in result.message


def test_check_fingerprint_unanswered_raising_hanging_are_messages() -> None:
    def stub(path: str, data: bytes) -> None: ...

    def boom(path: str, data: bytes) -> str:
        raise KeyError(path)

    def hang(path: str, data: bytes) -> str:
        while True:
            pass

    assert "Not answered yet" in repr(build_checks.check_fingerprint(stub, "a.css", b""))
    assert "Not answered yet" in repr(build_checks.check_fingerprint(..., "a.css", b""))
    assert "KeyError" in repr(build_checks.check_fingerprint(boom, "a.css", b""))
    assert "still running" in repr(build_checks.check_fingerprint(hang, "a.css", b""))


def test_check_deterministic_rejects_hashing_the_path() -> None:
    def by_path(path: str, data: bytes) -> str:
        return fingerprint.expected_name(path, path.encode())

    assert build_checks.check_deterministic(fingerprint.expected_name, "a.js", b"1") is None
    assert "hash the content" in repr(build_checks.check_deterministic(by_path, "a.js", b"1"))


# ---------------------------------------------------------------- 02: layer cache

COPY_ALL = """
FROM python:3.11-slim
WORKDIR /srv
COPY . .
RUN pip install -r requirements.txt
CMD ["uvicorn", "app.main:app"]
"""
DEPS_FIRST = COPY_ALL.replace("COPY . .\n", "COPY requirements.txt .\n").replace(
    'CMD ["uvicorn"', 'COPY app/ ./app/\nCMD ["uvicorn"'
)


def test_steps_rerun_copy_all_rebuilds_install_deps_first_does_not() -> None:
    assert build_checks.steps_rerun(COPY_ALL, "app/main.py")[:2] == [
        "COPY . .",
        "RUN pip install -r requirements.txt",
    ]
    assert build_checks.steps_rerun(DEPS_FIRST, "app/main.py") == [
        "COPY app/ ./app/",
        'CMD ["uvicorn", "app.main:app"]',
    ]
    assert build_checks.steps_rerun(DEPS_FIRST, "README.md") == []


def test_check_layer_cache_messages() -> None:
    check = build_checks.check_layer_cache
    assert check(DEPS_FIRST, "app/main.py") is None
    assert "reruns `pip install`" in repr(check(COPY_ALL, "app/main.py"))
    source_first = DEPS_FIRST.replace("COPY requirements.txt .\n", "")
    assert "not copied" in repr(check(source_first, "app/main.py"))
    assert "Not answered yet" in repr(check(..., "app/main.py"))
    hard_coded = DEPS_FIRST.replace("-r requirements.txt", "fastapi uvicorn")
    assert "requirements.txt" in repr(check(hard_coded, "app/main.py"))


def test_check_layer_cache_second_stage_reinstalling_after_source_fails() -> None:
    # A first stage ordered right, and a final stage that copies everything and reinstalls.
    hollow = DEPS_FIRST.replace("FROM python:3.11-slim", "FROM python:3.11-slim AS deps") + (
        "FROM python:3.11-slim\nCOPY . .\nRUN pip install -r requirements.txt\n"
        'CMD ["uvicorn", "app.main:app"]\n'
    )
    assert "reruns `pip install`" in repr(build_checks.check_layer_cache(hollow, "app/main.py"))


# ---------------------------------------------------------------- 03: nginx rate limit

SERVER = """
server {
    listen 127.0.0.1:{{ port }};
    location /api/ { %s }
}"""
ZONE = "limit_req_zone $binary_remote_addr zone=api:10m rate=5r/s;\n"
LIMIT = "limit_req zone=api burst=5 nodelay; "
PROXY = "proxy_pass http://{{ upstream }};"


def test_check_nginx_accepts_shows_nginx_message_for_zone_in_server() -> None:
    misplaced = SERVER.replace("server {\n", "server {\n" + ZONE) % (LIMIT + PROXY)
    result = nginx_checks.check_nginx_accepts(misplaced)
    assert isinstance(result, Failed)
    assert '"limit_req_zone" directive is not allowed here' in result.message
    assert nginx_checks.check_nginx_accepts(ZONE + SERVER % (LIMIT + PROXY)) is None


def test_check_rate_limited_fixed_config_passes() -> None:
    assert nginx_checks.check_rate_limited(ZONE + SERVER % (LIMIT + PROXY), requests=25) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [(PROXY, "all let through"), (LIMIT + "return 200;", "No request")],
    ids=["no-limit", "return-not-proxied"],
)
def test_check_rate_limited_wrong_configs_say_why(body: str, message: str) -> None:
    result = nginx_checks.check_rate_limited(ZONE + SERVER % body, requests=25)
    assert isinstance(result, Failed)
    assert message in result.message


FAKE_UPSTREAM = f'add_header {nginx_checks.UPSTREAM_HEADER} yes always; return 200 "upstream ok";'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (LIMIT + FAKE_UPSTREAM, "No request"),
        ("if ($arg_n = '') { return 429; } " + LIMIT + PROXY, "No request"),
    ],
    ids=["fake-upstream-header", "refuse-everything"],
)
def test_check_rate_limited_configs_that_only_look_limited_fail(body: str, message: str) -> None:
    result = nginx_checks.check_rate_limited(ZONE + SERVER % body, requests=25)
    assert isinstance(result, Failed)
    assert message in result.message


def test_check_rate_limited_refusing_the_first_request_fails() -> None:
    # Refuses the first request of each connection, proxies (and limits) the later ones.
    body = "if ($connection_requests = 1) { return 429; } " + LIMIT + PROXY
    result = nginx_checks.check_rate_limited(ZONE + SERVER % body, requests=25)
    assert isinstance(result, Failed)
    assert "first request of the burst" in result.message


def test_check_rate_limited_unanswered_and_bad_template() -> None:
    assert "Not answered yet" in repr(nginx_checks.check_rate_limited(...))
    assert "placeholders" in repr(nginx_checks.check_rate_limited("{{ nope }}"))


def test_public_fingerprint_check_runs_without_the_answer_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The learner distribution has no keys: the public case still checks, a hidden one waits."""
    monkeypatch.setitem(sys.modules, "opslab.grading.keys.fingerprint", None)
    data = b"body { color: #222; }\n"
    assert build_checks.check_fingerprint(fingerprint.expected_name, "css/app.css", data) is None
    failed = build_checks.check_fingerprint(fingerprint.expected_name, "a/b.js", b"x")
    assert "checked when your notebook is graded" in failed.message
    monkeypatch.undo()
    assert build_checks.expected_name("css/app.css", data) == "css/app.117f85041fb8.css"
