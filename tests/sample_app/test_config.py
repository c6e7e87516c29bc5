"""Settings: precedence, production refusal, masking."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

import sample_app
from sample_app.config import (
    MIN_SECRET_LENGTH,
    ConfigError,
    Settings,
    load_settings,
    mask_url_password,
)
from sample_app.main import create_app

GOOD_SECRET = "k" * MIN_SECRET_LENGTH


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No app variables from the outer environment; .env files looked up in tmp_path."""
    for name in list(os.environ):
        if name in Settings.model_fields or name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.delenv("SECRETS_DIR", raising=False)
    monkeypatch.setenv("ENV_FILE_DIR", str(tmp_path))
    return monkeypatch


def test_load_settings_defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.app_env == "production"  # fail closed: development must be asked for
    assert settings.app_env_defaulted
    assert settings.port == 8000
    assert settings.sqlalchemy_url == "sqlite:///data/todos.db"


def test_load_settings_env_file_selected_by_app_env(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env.staging").write_text("PORT=9001\nLOG_LEVEL=warning\n")
    (tmp_path / ".env.development").write_text("PORT=9002\n")
    clean_env.setenv("APP_ENV", "staging")
    clean_env.setenv("CSRF_SECRET", GOOD_SECRET)
    settings = load_settings()
    assert (settings.port, settings.log_level) == (9001, "warning")


def test_load_settings_environment_beats_env_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env.development").write_text("PORT=9002\n")
    clean_env.setenv("APP_ENV", "development")
    clean_env.setenv("PORT", "9003")
    assert load_settings().port == 9003


def test_load_settings_arguments_beat_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "9003")
    assert load_settings(port=9004).port == 9004


def test_load_settings_reads_secrets_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "csrf_secret").write_text(GOOD_SECRET)
    clean_env.setenv("SECRETS_DIR", str(secrets))
    assert load_settings().csrf_secret.get_secret_value() == GOOD_SECRET


def test_allowed_origins_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().allowed_origins == ["https://a.example", "https://b.example"]


def test_problems_empty_in_development() -> None:
    assert Settings(_env_file=None, app_env="development", log_level="debug").problems() == []


def test_problems_lists_every_production_issue() -> None:
    settings = Settings(
        _env_file=None,
        app_env="production",
        csrf_secret="short",
        log_level="DEBUG",
        allowed_origins="*",
    )
    problems = settings.problems()
    assert len(problems) == 3
    assert "CSRF_SECRET is too short (5 characters" in problems[0]
    assert "LOG_LEVEL=debug" in problems[1]
    assert "ALLOWED_ORIGINS" in problems[2]


def test_problems_placeholder_secret_in_production() -> None:
    settings = Settings(_env_file=None, app_env="production", csrf_secret="changeme")
    assert settings.problems() == [
        "CSRF_SECRET is a well-known placeholder value; generate a real secret"
    ]


def test_problems_missing_secret_in_production() -> None:
    settings = Settings(_env_file=None, app_env="production")
    assert settings.problems() == ["CSRF_SECRET is not set"]


def test_problems_none_for_good_production_settings() -> None:
    settings = Settings(_env_file=None, app_env="production", csrf_secret=GOOD_SECRET)
    assert settings.problems() == []


def test_secrets_masked_in_repr_and_dump() -> None:
    settings = Settings(_env_file=None, csrf_secret=GOOD_SECRET, smtp_password="hunter2-pw")
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert GOOD_SECRET not in text
        assert "hunter2-pw" not in text
    assert "**********" in repr(settings)


URLS = {"database_url": "postgresql://u:hunter2@h/db", "redis_url": "redis://:hunter2@h:6379/0"}


def test_connection_string_passwords_masked_in_repr_str_and_json() -> None:
    settings = Settings(_env_file=None, app_env="production", **URLS)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in text
        assert "postgresql://u:***@h/db" in text
        assert "redis://:***@h:6379/0" in text
    assert "hunter2" not in str(ConfigError(settings.problems(), "production"))
    assert settings.sqlalchemy_url == URLS["database_url"]  # the app still gets it whole
    assert settings.redis_url.get_secret_value() == URLS["redis_url"]


def test_connection_string_passwords_masked_in_cli_refusal(tmp_path: Path) -> None:
    env = {"APP_ENV": "production", "DATABASE_URL": URLS["database_url"]}
    for more in ({}, {"PORT": "eighty"}):  # a problems() refusal, a validation error
        result = _run_cli(["check-config"], {**env, **more}, tmp_path)
        assert result.returncode == 2
        assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("sqlite:///data/todos.db", "sqlite:///data/todos.db"),
        ("postgresql://h/db?user=u&password=hunter2", "postgresql://h/db?user=u&password=***"),
        ("mysql://u:p%40ss@h:3306/db", "mysql://u:***@h:3306/db"),
        ("postgresql://u:hunt#er2@h/db", "postgresql://u:***@h/db"),  # "#" not encoded
        ("postgresql://u:hun?ter2@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_mask_url_password_keeps_everything_but_the_password(url: str, shown: str) -> None:
    assert mask_url_password(url) == shown


def _run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return subprocess.run(
        [sys.executable, "-m", "sample_app", *args],
        env={**full_env, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serve_in_production_with_placeholder_exits_with_one_message(tmp_path: Path) -> None:
    env = {"APP_ENV": "production", "CSRF_SECRET": "changeme", "LOG_LEVEL": "debug"}
    result = _run_cli(["serve", "--port", "1"], env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "refusing to start (APP_ENV=production)" in result.stderr
    assert "CSRF_SECRET is a well-known placeholder" in result.stderr
    assert "LOG_LEVEL=debug" in result.stderr
    assert "changeme" not in result.stderr


def test_serve_without_app_env_runs_as_production_and_says_so(tmp_path: Path) -> None:
    result = _run_cli(["serve", "--port", "1"], {}, tmp_path)  # no APP_ENV, no secrets
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "APP_ENV is not set, so the app runs as production" in result.stderr
    assert "needs CSRF_SECRET" in result.stderr
    assert "CSRF_SECRET is not set" in result.stderr


def test_docs_absent_when_app_env_unset(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(csrf_secret=GOOD_SECRET, data_dir=tmp_path)
    assert settings.problems() == []
    with TestClient(create_app(settings)) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/debug/slow", params={"seconds": 0}).status_code == 404
        assert client.get("/ready").status_code == 200


def test_check_config_reports_invalid_values_without_traceback(tmp_path: Path) -> None:
    result = _run_cli(["check-config"], {"PORT": "eighty", "WORKERS": "0"}, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "PORT:" in result.stderr
    assert "WORKERS:" in result.stderr


def test_check_config_ok_in_development(tmp_path: Path) -> None:
    result = _run_cli(["check-config"], {"APP_ENV": "development"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK for APP_ENV=development" in result.stdout


def test_shutdown_timeout_keeps_fractions(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from sample_app import cli

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("SHUTDOWN_TIMEOUT", "0.5")
    monkeypatch.setenv("IDLE_TIMEOUT", "2.5")
    monkeypatch.setenv("PORT", "8999")  # serve writes it back to os.environ: restored after
    cli.main(["serve"])
    assert seen["timeout_graceful_shutdown"] == 0.5  # was int(): 0, no grace at all
    assert seen["timeout_keep_alive"] == 2.5


@pytest.mark.parametrize(
    ("idle", "open_"), [(0, 10), (20, 10)], ids=["idle 0 (unlimited)", "idle above open"]
)
def test_db_pool_sizes_validated(idle: int, open_: int) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, db_max_idle_conns=idle, db_max_open_conns=open_)


# Declared for integrations the app does not have yet (a cache, mail, error reporting):
# optional, never required, so an operator is never made to manage them. Nothing else
# may be declared without being read: SESSION_SECRET was required in production and unused.
UNREAD_OPTIONAL_FIELDS = {
    "redis_url",
    "smtp_host",
    "smtp_port",
    "smtp_user",
    "smtp_password",
    "sentry_dsn",
}


def _names_used(tree: ast.AST) -> set[str]:
    """Attribute names and string constants in `tree`, leaving out decorators' arguments."""
    decorators = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for dec in func.decorator_list
        for node in ast.walk(dec)
    }
    return {
        node.attr if isinstance(node, ast.Attribute) else node.value
        for node in ast.walk(tree)
        if id(node) not in decorators
        and (
            isinstance(node, ast.Attribute)
            or (isinstance(node, ast.Constant) and isinstance(node.value, str))
        )
    }


def _names_read_in_sample_app() -> set[str]:
    """Names the app's modules use, and config.py's properties (its checks read everything)."""
    names: set[str] = set()
    for path in Path(sample_app.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        if path.name != "config.py":
            names |= _names_used(tree)
            continue
        for node in ast.walk(tree):
            is_property = isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
            )
            if is_property:
                names |= _names_used(node)
    return names


def test_settings_fields_all_read_by_the_app() -> None:
    unread = set(Settings.model_fields) - _names_read_in_sample_app()
    assert unread == UNREAD_OPTIONAL_FIELDS  # a field now read: take it off the list


def test_settings_unread_fields_never_required_in_production() -> None:
    problems = Settings(_env_file=None, app_env="production", csrf_secret=GOOD_SECRET).problems()
    assert problems == []
    assert "session_secret" not in Settings.model_fields
