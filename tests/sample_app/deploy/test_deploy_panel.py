"""Section 07's panel run: a deploy-tool command under live GETs through nginx, counted."""

from __future__ import annotations

import sys
from pathlib import Path

from opslab import experiments

from .conftest import deploy_release

VERSIONS = {"v1": "1.0.0", "v2": "2.0.0", "v3": "3.0.0"}


def test_a_broken_release_is_refused_and_live_traffic_never_fails(
    proxy, releases: dict[str, Path], state_dir: Path, deploy_cli
) -> None:
    assert deploy_release(deploy_cli, state_dir, releases["v1"], "1.0.0").returncode == 0
    deploy = [sys.executable, "-m", "sample_app.deploy", "--state-dir", str(state_dir)]
    run = {"deploy": deploy, "releases": releases, "versions": VERSIONS, "proxy": proxy}

    _fig, broken = experiments.deploy_under_load("deploy v3", **run)
    _fig, fixed = experiments.deploy_under_load("deploy v2", **run)

    assert broken.iloc[0]["tool's exit code"] == 1
    assert broken.iloc[0]["live after"] == "v1"
    assert "answered by v3" not in broken.columns
    assert fixed.iloc[0]["tool's exit code"] == 0
    assert fixed.iloc[0]["live after"] == "v2"
    assert broken.iloc[0]["failed"] == fixed.iloc[0]["failed"] == 0
