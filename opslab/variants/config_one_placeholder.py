"""The app with a common (the Go chapter's) production check: one exact placeholder only.

That check refuses a secret only when it is missing or equal to the literal
"default-secret", and stops at the first problem. "changeme", "secret" or a
six-character secret pass; an operator fixing one problem meets the next on the next
start. The app's own `Settings.problems()` lists every problem and also refuses known
placeholders and short secrets.
"""

from __future__ import annotations

from sample_app import config

KNOWN_PLACEHOLDER = "default-secret"


def one_placeholder_problems(self: config.Settings) -> list[str]:
    """At most one problem, and only the exact placeholder counts as one."""
    if self.is_development:
        return []
    for name in config.REQUIRED_SECRETS:
        value = getattr(self, name)
        if value is None:
            return [f"{name.upper()} is required"]
        if value.get_secret_value() == KNOWN_PLACEHOLDER:
            return [f"{name.upper()} must be changed in production"]
    if self.log_level == "debug":
        return ["LOG_LEVEL should not be 'debug' in production"]
    return []


def apply() -> None:
    """Replace the app's checks with the Go chapter's."""
    config.Settings.problems = one_placeholder_problems  # type: ignore[method-assign]
