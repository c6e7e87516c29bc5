"""A class on a real JupyterHub: three learners log in with Chromium, pull the course with an
nbgitpuller link and each run two sections at once; none sees another's processes or files,
and stopping the hub leaves nothing of theirs running.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from opslab import hub, hub_classes, hub_learners
from opslab.caps import strict_mode
from opslab.lab_driver import start_run_all, wait_until_run

ROOT = hub.ROOT
SECTIONS = ("00-setup.ipynb", "04-configuration.ipynb")
REPORT = ROOT / "_build" / "hub" / "learners.json"
SCREENSHOTS = ROOT / "_build" / "screenshots"
TOOLS = ("npm", "unshare", "tini", "setpriv", "useradd", "nsenter", "runuser")
pytestmark = pytest.mark.timeout(900)


def _need_root_and_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    why = "needs root" if os.getuid() != 0 else f"needs {', '.join(missing)}" if missing else ""
    if why:
        (pytest.fail if strict_mode() else pytest.skip)(f"the hub test {why}")


@pytest.fixture(scope="module")
def class_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hub.Hub, dict]]:
    """A hub with three new learners on the roster; stopped, and the learners deleted, after."""
    _need_root_and_tools()
    mode = ROOT.stat().st_mode
    if hub.exposed_answers():  # a checkout others can enter: close it while learners exist
        os.chmod(ROOT, stat.S_IMODE(mode) & ~0o007)
    had_group = subprocess.run(["getent", "group", hub_learners.LEARNER_GROUP], capture_output=True)
    state = tmp_path_factory.mktemp("hub")
    tag = secrets.token_hex(3)
    names = [f"t{tag}-{name}" for name in ("ada", "bo", "cy")]
    passwords = hub_learners.add_learners(names, state)
    server = hub.prepare(state, server_args=["--LabApp.expose_app_in_browser=True"])
    try:
        yield server.start(timeout=120), passwords
    finally:
        server.stop()
        left = {n: _pids_of(n) for n in names if _exists(n)}
        hub_learners.remove_learners(names, state)
        os.chmod(ROOT, stat.S_IMODE(mode))
        if had_group.returncode != 0:
            subprocess.run(["groupdel", hub_learners.LEARNER_GROUP], check=True)
        assert not any(left.values()), f"learners' processes outlived the hub: {left}"
        assert not hub.learners_with_cgroups()


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _pids_of(name: str) -> list[str]:
    done = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True, check=False)
    return done.stdout.split()


def log_in(browser: Browser, server: hub.Hub, name: str, password: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    return context


def open_section(context: BrowserContext, server: hub.Hub, name: str, notebook: str) -> Page:
    """A tab with `notebook` of the learner's clone open in a workspace of its own."""
    page = context.new_page()
    path = f"{hub_classes.COURSE_DIR}/notebooks/{notebook}"
    page.goto(f"{server.url}/user/{name}/lab/workspaces/{Path(notebook).stem}/tree/{path}")
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext.session?.kernel?.status"
        " === 'idle'",
        timeout=60_000,
    )
    return page


def test_a_wrong_password_is_refused(class_hub: tuple[hub.Hub, dict], browser: Browser) -> None:
    server, passwords = class_hub
    name = next(iter(passwords))
    context = log_in(browser, server, name, "not-" + passwords[name])
    page = context.pages[0]
    expect(page.locator(".login_error")).to_contain_text("Invalid username or password")
    assert not _exists(name) or not _pids_of(name)
    context.close()


def pull_course(context: BrowserContext, server: hub.Hub) -> None:
    """Follow the nbgitpuller link: the clone lands in the home, the link opens 00-setup."""
    page = context.pages[0]
    page.goto(hub.pull_link(server.url, hub.HUB_ROOT / "course.git"))
    page.wait_for_url("**/lab/tree/ops-lab/notebooks/00-setup.ipynb", timeout=180_000)
    page.close()


def test_three_learners_pull_the_course_and_run_two_sections_at_once(
    class_hub: tuple[hub.Hub, dict], browser: Browser, tmp_path: Path
) -> None:
    server, passwords = class_hub
    contexts = {n: log_in(browser, server, n, p) for n, p in passwords.items()}
    try:
        for context in contexts.values():
            pull_course(context, server)
        pages = {
            f"{name}/{notebook}": open_section(context, server, name, notebook)
            for name, context in contexts.items()
            for notebook in SECTIONS
        }
        started = time.monotonic()
        for page in pages.values():
            start_run_all(page)
        wait_until_run(pages)
        elapsed = time.monotonic() - started
        check_isolation(list(passwords))
        write_report(list(passwords), elapsed)
        check_collect(list(passwords), tmp_path)
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, context in contexts.items():
            for i, page in enumerate(context.pages):
                page.screenshot(path=SCREENSHOTS / f"hub-{name.split('-')[-1]}-{i}.png")
        raise
    finally:
        for context in contexts.values():
            context.close()


def as_learner(name: str, *cmd: str, pid: int | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` as the learner; with `pid`, inside that process's PID and mount namespaces."""
    enter = ["nsenter", f"--target={pid}", "--pid", "--mount"] if pid else []
    done = [*enter, *hub_classes.become(name), *cmd]
    return subprocess.run(done, capture_output=True, text=True, check=False)


def a_process_of(name: str) -> int:
    uid = pwd.getpwnam(name).pw_uid
    for pid in sorted(hub_classes.members(hub_classes.cgroup_dirs(name))):
        if os.stat(f"/proc/{pid}").st_uid == uid:
            return pid
    raise AssertionError(f"no process of {name} in its cgroups")


def check_isolation(names: list[str]) -> None:
    """Homes and /tmp private, no answers pulled, each learner sees only their own processes."""
    for name in names:
        home = Path(pwd.getpwnam(name).pw_dir)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        clone = home / hub_classes.COURSE_DIR
        assert (clone / "notebooks" / SECTIONS[0]).is_file()
        assert not (clone / "solutions").exists()
        assert not (clone / "opslab" / "grading" / "keys").exists()
        status = Path(f"/proc/{a_process_of(name)}/status").read_text()
        assert "NoNewPrivs:\t1" in status, "a setuid program could give the learner root"
        seen = as_learner(name, "ps", "-eo", "user:40=", pid=a_process_of(name))
        assert seen.returncode == 0, seen.stderr
        assert set(seen.stdout.split()) == {name}, f"{name} sees {set(seen.stdout.split())}"
    first, second = names[0], names[1]
    # /tmp is each learner's own: a file made there is seen neither by another nor the host.
    marker = f"/tmp/{first}-was-here"
    made = as_learner(first, "touch", marker, pid=a_process_of(first))
    assert made.returncode == 0, made.stderr
    assert as_learner(first, "test", "-e", marker, pid=a_process_of(first)).returncode == 0
    assert as_learner(second, "test", "-e", marker, pid=a_process_of(second)).returncode == 1
    assert not Path(marker).exists()
    other_home = pwd.getpwnam(second).pw_dir
    assert as_learner(first, "ls", other_home).returncode != 0
    assert as_learner(first, "ls", str(ROOT / "solutions")).returncode != 0


def write_report(names: list[str], elapsed: float) -> None:
    """What each learner's server used while the two sections ran: the capacity figures."""
    usage = {n: hub_classes.usage(hub_classes.cgroup_dirs(n)) for n in names}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    figures = {"learners": len(names), "sections": SECTIONS, "wall_s": round(elapsed, 1)}
    REPORT.write_text(json.dumps({**figures, "usage": usage}, indent=1) + "\n")


def check_collect(names: list[str], tmp_path: Path) -> None:
    """Submissions for `make grade`: one learner's file arrives; a symlink to a file only root
    can read and an oversized file are refused, each with its reason."""
    linker, hoarder, honest = names
    review = f"{hub_classes.COURSE_DIR}/exercises/review.ipynb"
    home = {n: Path(pwd.getpwnam(n).pw_dir) for n in names}
    link = as_learner(linker, "ln", "-sf", "/etc/shadow", str(home[linker] / review))
    assert link.returncode == 0, link.stderr
    big = f"head -c {hub_learners.MAX_SUBMISSION + 1} /dev/zero > {home[hoarder] / review}"
    assert as_learner(hoarder, "sh", "-c", big).returncode == 0
    out = tmp_path / "submissions"
    verdicts = hub_learners.collect("review", out, names)
    assert verdicts[honest] == "collected"
    assert "Permission denied" in verdicts[linker]
    assert "larger than" in verdicts[hoarder]
    assert sorted(p.name for p in out.iterdir()) == [f"{honest}.ipynb"]
    submitted = nbformat.reads((out / f"{honest}.ipynb").read_text(), as_version=4)
    assert submitted.cells, "the collected review is a notebook"
