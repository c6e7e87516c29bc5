"""A learner's session in a real JupyterLab: run a section, turn its panel, restart the kernel.

JupyterLab runs on loopback with a temporary root holding a copy of section 06; Chromium
runs all its cells, reruns the live panel with another knob value, then restarts the
kernel in the middle of a run: every server the kernel started must be gone after it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from opslab import pidfiles
from opslab.lab_driver import run_all
from opslab.procs import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "06-graceful-shutdown.ipynb"
SCREENSHOTS = ROOT / "_build" / "screenshots"
# Section 07's panel needs the releases and nginx its earlier cells build: it runs whole.
WHOLE_SECTIONS = {"07": "07-blue-green-deploy.ipynb"}
pytestmark = pytest.mark.timeout(300)


class JupyterLab(ManagedProcess):
    """`jupyter lab` on 127.0.0.1 with a random token; ready once its API answers."""

    def __init__(self, root: Path, *, env: dict[str, str]) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        cmd = [
            Path(sys.executable).parent / "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
        ]
        if os.getuid() == 0:
            cmd.append("--allow-root")
        super().__init__(cmd, name="jupyterlab", env=env, cwd=root)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self, timeout: float) -> None:
        self.wait_http(f"{self.url}/api/status?token={self.token}", timeout=timeout)


# The other panels, each in a notebook of its own: the section's panel cell (copied by its
# id) after a preamble that sets up what the section's earlier cells would have.
PANELS = {
    "03": (
        "03-reverse-proxy-nginx.ipynb",
        "c3a9e2d1",
        "import opslab\nopslab.setup()\nRATE, BURST, HAVE_NGINX = 20, 20, True",
    ),
    "05": (
        "05-metrics.ipynb",
        "e5b4c1d1",
        "import opslab\nfrom opslab import metrics_lab\nopslab.setup()\n"
        'app = opslab.start_app(name="metrics-app")\n'
        'prom = metrics_lab.AppPrometheus([f"127.0.0.1:{app.port}"], name="metrics-prom")\n'
        "prom.start().wait_for_scrape(timeout=30)\nHAVE_PROMETHEUS = True",
    ),
}


def panel_notebook(section: str, dest: Path) -> str:
    """Write the panel notebook of `section` into `dest`; returns its file name."""
    source, cell_id, preamble = PANELS[section]
    notebook = nbformat.read(ROOT / "notebooks" / source, as_version=4)
    [cell] = [c for c in notebook.cells if c.get("id") == cell_id]
    notebook.cells = [nbformat.v4.new_code_cell(preamble), cell]
    name = f"panel-{section}.ipynb"
    nbformat.write(notebook, dest / name)
    return name


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JupyterLab, Path]]:
    """JupyterLab over a copy of the section; yields it and the kernel's pidfile directory."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root, state = tmp_path / "course", tmp_path / "kernel-state"
    root.mkdir()
    for name in [SECTION, *WHOLE_SECTIONS.values()]:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    for section in PANELS:
        panel_notebook(section, root)
    env = {
        "OPSLAB_STATE_DIR": str(state),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    server = JupyterLab(root, env=env).start(timeout=60)
    try:
        yield server, state
    finally:
        server.stop(timeout=15)


@pytest.fixture(autouse=True)
def no_leftovers(lab: tuple[JupyterLab, Path]) -> Iterator[None]:
    """After each test, whatever it did: no kernel and no server of its kernels left.

    The tests assert that the kernel stops its servers; this makes a failure stay one
    failure instead of leaving servers that the next test then finds.
    """
    yield
    server, state = lab
    api = f"{server.url}/api/kernels"
    params = {"token": server.token}
    for kernel in httpx.get(api, params=params).json():
        httpx.delete(f"{api}/{kernel['id']}", params=params)
    for _path, record in pidfiles.read_pidfiles(state):
        if pidfiles.is_alive(record.pid, record.start_time):
            pidfiles.kill_group(record.pgid)


def live_servers(state: Path) -> list[str]:
    """The servers recorded in the kernel's pidfile directory that still run."""
    records = [record for _path, record in pidfiles.read_pidfiles(state)]
    return [r.name for r in records if pidfiles.is_alive(r.pid, r.start_time)]


def open_notebook(page: Page, server: JupyterLab, name: str) -> None:
    # A workspace per notebook: the default one would reopen the previous test's notebook.
    workspace = Path(name).stem
    page.goto(f"{server.url}/lab/workspaces/{workspace}/tree/{name}?token={server.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status"
        " === 'idle'",
        timeout=30_000,
    )


def output_alt(panel: Locator) -> str:
    return panel.locator(".widget-output img").first.get_attribute("alt") or ""


def open_and_run(browser: Browser, server: JupyterLab, name: str, shot: str) -> Page:
    """Open a notebook, Run All, check its panel drew a figure and keep a screenshot of it."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    open_notebook(page, server, name)
    run_all(page)
    # The course's JupyterLab settings turn off the news prompt that covered the outputs.
    assert not page.get_by_text("official Jupyter news").count()
    panel = the_panel(page)
    panel.scroll_into_view_if_needed()
    expect(panel.locator(".widget-output img")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=SCREENSHOTS / shot)
    return page


def the_panel(page: Page) -> Locator:
    return page.locator(".widget-vbox").filter(has=run_button(page)).last


def run_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Run", exact=True)


def click_run_and_see_run_2(page: Page, *, timeout_ms: int) -> None:
    """Click Run again: the panel's status line says run 2 and its figure is run 2's.

    The figure is named by its run (its alt text), not compared with the first: two runs
    of a deterministic experiment may draw the same picture.
    """
    panel = the_panel(page)
    assert "run 1)" in output_alt(panel)
    run_button(page).click()
    status = panel.locator(".widget-html", has_text="run 2:")
    expect(status).to_be_visible(timeout=timeout_ms)
    assert "run 2)" in output_alt(panel)


def wait_until_no_server(state: Path) -> None:
    deadline = time.monotonic() + 15
    while live_servers(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live_servers(state)


def test_a_learner_runs_the_section_turns_the_panel_and_restarts_cleanly(
    lab: tuple[JupyterLab, Path], browser: Browser
) -> None:
    server, state = lab
    page = open_and_run(browser, server, SECTION, "panel-06.png")
    readout = the_panel(page).locator(".widget-slider").first.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    click_run_and_see_run_2(page, timeout_ms=30_000)
    expect(the_panel(page).locator(".widget-html", has_text="run 2:")).to_contain_text(
        "drain_seconds=0.0"
    )

    # Restart the kernel in the middle of a run: its servers must not outlive it.
    run_button(page).click()
    deadline = time.monotonic() + 15
    while not live_servers(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_servers(state), "the run started no server"
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    wait_until_no_server(state)
    page.context.close()
    httpx.get(f"{server.url}/api/status?token={server.token}").raise_for_status()


@pytest.mark.parametrize("section", sorted(PANELS))
def test_a_panel_renders_and_a_click_reruns_it(
    lab: tuple[JupyterLab, Path], browser: Browser, section: str
) -> None:
    server, state = lab
    page = open_and_run(browser, server, f"panel-{section}.ipynb", f"panel-{section}.png")
    click_run_and_see_run_2(page, timeout_ms=40_000)
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    wait_until_no_server(state)
    page.context.close()


@pytest.mark.parametrize("section", sorted(WHOLE_SECTIONS))
def test_a_whole_section_runs_and_its_panel_deploys_under_traffic(
    lab: tuple[JupyterLab, Path], browser: Browser, section: str
) -> None:
    server, state = lab
    page = open_and_run(browser, server, WHOLE_SECTIONS[section], f"panel-{section}.png")
    the_panel(page).locator("select").select_option("deploy v2")
    click_run_and_see_run_2(page, timeout_ms=60_000)
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    wait_until_no_server(state)
    page.context.close()
