"""Checkpoint 04's model answer and hidden cases (instructors only)."""

from __future__ import annotations

from collections.abc import Mapping

from opslab.grading.precedence_checks import DEFAULTS, Case


def parse_dotenv(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines; blanks and `#` comments skipped, split at the first `=`, unquoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def reference_resolve(
    defaults: Mapping[str, str],
    dotenv_text: str,
    environ: Mapping[str, str],
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """The model answer: overrides > environment > .env > defaults, known settings only."""
    dotenv = parse_dotenv(dotenv_text)
    resolved = {}
    for name, default in defaults.items():
        env_name = name.upper()
        if name in overrides:
            resolved[name] = overrides[name]
        elif env_name in environ:
            resolved[name] = environ[env_name]
        elif env_name in dotenv:
            resolved[name] = dotenv[env_name]
        else:
            resolved[name] = default
    return resolved


HIDDEN_CASES: dict[str, Case] = {
    "env-beats-dotenv": (
        "a real environment variable wins over the same name in .env",
        DEFAULTS,
        "PORT=7000\nWORKERS=2\n",
        {"PORT": "8080", "HOME": "/root"},
        {},
    ),
    "overrides-win": (
        "an explicit override wins over the environment and .env",
        {"port": "5000", "log_level": "warning"},
        "LOG_LEVEL=error\n",
        {"LOG_LEVEL": "debug"},
        {"log_level": "critical"},
    ),
    "dotenv-syntax": (
        "the .env text has comments, blank lines, spaces, quotes and '=' inside a value",
        DEFAULTS,
        '# local settings\n\n  LOG_LEVEL = "warning"  \n'
        "DATABASE_URL='postgresql://app@db/app?sslmode=require'\n#WORKERS=9\n",
        {},
        {},
    ),
    "unknown-names": (
        "variables that are not settings (PATH, HOME, a typo in .env) are ignored",
        {"port": "8000", "request_timeout": "30"},
        "REQUEST_TIMOUT=5\nEXTRA=1\n",
        {"PATH": "/usr/bin", "REQUEST_TIMEOUT": "10"},
        {},
    ),
    "empty-sources": (
        "with nothing set, every setting is its default",
        {"port": "8000", "instance_id": "blue"},
        "",
        {},
        {},
    ),
}
