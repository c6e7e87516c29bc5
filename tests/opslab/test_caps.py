"""Capability checks against real PATH lookups (an empty PATH makes a tool really absent)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from opslab import caps
from opslab.caps import (
    CHECKS,
    MissingCapability,
    check,
    find_binary,
    install_hint,
    needs,
    report,
    require,
)


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH pointing at an empty directory: nothing is found there."""
    directory = tmp_path / "empty-bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


@pytest.fixture
def fake_git(empty_path: Path) -> Path:
    """A `git` on PATH that prints a version, as the real one does."""
    script = empty_path / "git"
    script.write_text("#!/bin/sh\necho 'git version 9.8.7'\n")
    script.chmod(0o755)
    return script


def test_check_finds_tool_on_path_with_its_version(fake_git: Path) -> None:
    capability = check("git")

    assert capability.available
    assert capability.version == "9.8.7"
    assert capability.detail == str(fake_git)


def test_check_reports_tool_missing_from_empty_path(empty_path: Path) -> None:
    capability = check("prometheus")

    assert not capability.available
    assert "apt-get install -y prometheus" in capability.install_hint


def test_require_in_strict_mode_raises_missing_capability(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSLAB_STRICT", "1")

    with pytest.raises(MissingCapability, match="apt-get install -y prometheus"):
        require("prometheus")


def test_require_without_strict_mode_returns_false_and_shows_hint(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)

    with caplog.at_level(logging.WARNING, logger="opslab"):
        have = require("prometheus", "git")

    assert not have
    assert have.missing == ("prometheus", "git")

    assert "Missing: prometheus" in caplog.text
    assert "Missing: git" in caplog.text
    assert "make system-deps" in caplog.text
    assert "will be skipped" in caplog.text


def test_require_returns_true_when_everything_is_present(
    fake_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSLAB_STRICT", "1")

    assert require("git")


def test_check_unknown_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown capability"):
        check("kubernetes")


def test_install_hint_on_the_hub_says_there_is_no_engine_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(caps.ON_HUB_VAR, "1")
    assert install_hint("podman") == caps.ON_HUB_ENGINE_HINT
    assert install_hint("container-engine") == caps.ON_HUB_ENGINE_HINT
    assert "apt-get install -y nginx" in install_hint("nginx")  # what the hub could install


def test_install_hint_names_apt_brew_and_make() -> None:
    hint = install_hint("nginx-brotli")

    assert "sudo apt-get install -y nginx libnginx-mod-http-brotli-filter" in hint
    assert "macOS" in hint
    assert "make system-deps" in hint


def test_report_has_one_row_per_capability() -> None:
    table = report()

    assert list(table.index) == list(CHECKS)
    assert {"available", "version", "detail", "install_hint"} <= set(table.columns)


def test_missing_tools_variable_hides_an_installed_tool(
    fake_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check("git").available

    monkeypatch.setenv("OPSLAB_MISSING_TOOLS", "nginx, git")

    assert not check("git").available
    assert "git" in check("git").install_hint


def test_missing_tools_variable_hides_a_tool_outside_path(monkeypatch: pytest.MonkeyPatch) -> None:
    if find_binary("nginx") is None:
        pytest.skip("nginx is not installed here")  # the override is what this test is about

    monkeypatch.setenv("OPSLAB_MISSING_TOOLS", "nginx")

    assert find_binary("nginx") is None
    assert not check("nginx").available


def test_needs_names_the_missing_tool_and_what_the_cell_shows(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)
    have = require("git")

    with caplog.at_level(logging.WARNING, logger="opslab"):
        assert needs(have and require("wrk"), shows="the git log.") is False

    assert "Skipped: git is not installed. This cell would show the git log." in caplog.text


def test_needs_with_a_plain_flag_uses_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="opslab"):
        assert needs(False, shows="lint findings", why="hadolint is not installed") is False

    assert "Skipped: hadolint is not installed. This cell would show lint findings." in caplog.text


def test_needs_is_silent_when_the_tool_is_present(
    fake_git: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="opslab"):
        assert needs(require("git"), shows="the git log") is True

    assert caplog.text == ""


def test_needs_refuses_an_empty_shows_text() -> None:
    with pytest.raises(ValueError, match="shows"):
        needs(True, shows=" ")


@pytest.mark.parametrize(
    ("wanted", "daemon", "podman", "dockerd", "root", "route"),
    [
        ("", True, True, True, True, "daemon"),  # the learner's own Docker first
        ("", False, True, True, True, "podman"),
        ("", False, False, True, True, "dockerd"),
        ("", False, False, True, False, None),  # dockerd needs root
        ("podman", True, True, True, True, "podman"),  # the choice beats a running daemon
        ("podman", True, False, True, True, None),
        ("docker", False, True, True, True, "dockerd"),
        ("docker", True, True, True, True, "daemon"),
        ("docker", False, True, False, True, None),
    ],
)  # fmt: skip
def test_engine_route_is_the_one_order_every_caller_follows(
    monkeypatch: pytest.MonkeyPatch, wanted: str, daemon: bool, podman: bool, dockerd: bool,
    root: bool, route: str | None,
) -> None:  # fmt: skip
    present = {"docker": True, "podman": podman, "dockerd": dockerd}
    monkeypatch.setenv("OPSLAB_ENGINE", wanted)
    monkeypatch.setattr(caps, "find_binary", lambda name: f"/bin/{name}" if present[name] else None)
    monkeypatch.setattr(caps, "_docker_daemon_reachable", lambda: daemon)
    monkeypatch.setattr(caps.os, "geteuid", lambda: 0 if root else 1000)
    assert caps.engine_route() == route
    from opslab.grading import dockerfile_build

    assert dockerfile_build.engine_available() is (route is not None)
    assert caps.check("container-engine").available is (route is not None)


def test_engine_env_with_a_typo_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSLAB_ENGINE", "dokcer")
    with pytest.raises(ValueError, match="use one of docker, podman"):
        caps.engine_route()


def test_checkov_is_found_in_its_own_venv_or_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(caps.MISSING_TOOLS_VAR, "checkov")
    missing = check("checkov")
    assert not missing.available
    assert "make setup" in missing.install_hint
    monkeypatch.setenv(caps.ON_HUB_VAR, "1")
    assert check("checkov").install_hint == caps.CHECKOV_ON_HUB_HINT
