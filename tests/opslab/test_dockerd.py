"""The course's private dockerd: one per machine, and the host as it was found after it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker
import pytest

from opslab import containers
from opslab.caps import _docker_daemon_reachable, find_binary
from opslab.procs import ProcessError
from tests.conftest import require_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _nat_rules() -> list[str]:
    done = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    return sorted(done.stdout.splitlines())


def _daemons(workdir: Path) -> list[str]:
    """Processes whose command line names `workdir` (dockerd, its containerd, shims)."""
    done = subprocess.run(["pgrep", "-af", str(workdir)], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture
def dockerd() -> str:
    require_engine("docker")
    if _docker_daemon_reachable():
        pytest.skip("a Docker daemon of the machine runs: the private one is not used")
    if containers._ENGINE is not None and containers._ENGINE.service is not None:
        containers._ENGINE.service.stop()  # a module's engine: this test needs the machine
    binary = find_binary("dockerd")
    assert binary is not None
    return binary


def test_a_second_private_dockerd_is_refused_with_a_clear_error(dockerd: str) -> None:
    """Two daemons would fight over docker0 and the NAT rule: the second never starts."""
    first = containers.DockerdService(dockerd).start(timeout=60)
    try:
        started = time.monotonic()
        with pytest.raises(ProcessError, match="another kernel runs the course's private dockerd"):
            containers.DockerdService(dockerd, wait=1.0)
        assert time.monotonic() - started >= 1.0  # it waited for the first, as asked
        assert first.running
    finally:
        first.stop()


def test_stop_leaves_the_host_as_it_was_found(dockerd: str) -> None:
    rules = [rule for rule in _nat_rules() if containers.NAT_COMMENT not in rule]
    service = containers.DockerdService(dockerd).start(timeout=60)
    try:
        assert any(containers.NAT_COMMENT in rule for rule in _nat_rules())
        assert Path("/sys/class/net/docker0").exists()
        client = docker.DockerClient(base_url=service.base_url, timeout=60)
        base, _ = containers.ensure_base_image(client)
        owner = {containers.OWNER_LABEL: containers._owner()}
        box = client.containers.run(base, ["sleep", "600"], detach=True, labels=owner)
        containers._STARTED.append(box)
        assert _daemons(service.workdir)  # dockerd, containerd and a shim
    finally:
        service.stop()
    assert _daemons(service.workdir) == []
    assert _nat_rules() == rules
    assert not Path("/sys/class/net/docker0").exists()


KILLED_KERNEL = textwrap.dedent(
    """
    import sys, time
    from opslab import containers
    engine = containers.engine("docker")
    print(engine.service.workdir, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_kernels_dockerd_stops_and_its_nat_rule_is_taken_over(dockerd: str) -> None:
    """SIGKILL gives the kernel no atexit: dockerd dies with it, the next start cleans up."""
    rules = [rule for rule in _nat_rules() if containers.NAT_COMMENT not in rule]
    env = {**os.environ, "OPSLAB_ENGINE": "docker"}
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_KERNEL], stdout=subprocess.PIPE, text=True, env=env
    ) as kernel:
        assert kernel.stdout is not None
        workdir = Path(kernel.stdout.readline().strip())
        assert _daemons(workdir)
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.wait(timeout=10)
    deadline = time.monotonic() + 30  # dockerd got SIGTERM (PDEATHSIG) and stops by itself
    while _daemons(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _daemons(workdir) == []
    assert any(containers.NAT_COMMENT in rule for rule in _nat_rules())  # no one removed it
    assert Path("/sys/class/net/docker0").exists()
    service = containers.DockerdService(dockerd).start(timeout=60)
    service.stop()
    assert _nat_rules() == rules
    assert not Path("/sys/class/net/docker0").exists()
