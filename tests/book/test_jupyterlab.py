"""A learner's session in a real JupyterLab: run a section, turn its panel, restart the kernel.

JupyterLab runs on loopback with a temporary root holding a copy of section 06; Chromium
runs all its cells, reruns the live panel with another knob value, then restarts the
kernel in the middle of a run: every server the kernel started must be gone after it.
"""

from __future__ import annotations

import json
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
from opslab.procs import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "06-graceful-shutdown.ipynb"
SCREENSHOTS = ROOT / "_build" / "screenshots"
RUN_ALL_TIMEOUT_MS = 75_000


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
    shutil.copy(ROOT / "notebooks" / SECTION, root / SECTION)
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


def live_servers(state: Path) -> list[str]:
    """The servers recorded in the kernel's pidfile directory that still run."""
    found = []
    for path in state.glob("*.json"):
        record = pidfiles.ProcRecord(**json.loads(path.read_text()))
        if pidfiles.is_alive(record.pid, record.start_time):
            found.append(record.name)
    return found


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


def run_all(page: Page) -> None:
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Done when the kernel is idle and no prompt is waiting ("[*]" or "[ ]").
    page.wait_for_function(
        """() => {
            const nb = window.jupyterapp.shell.currentWidget;
            const kernel = nb && nb.sessionContext.session && nb.sessionContext.session.kernel;
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return kernel && kernel.status === 'idle' && prompts.length > 0 &&
                prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=RUN_ALL_TIMEOUT_MS,
        polling=500,
    )


def output_image(panel: Locator) -> str:
    return panel.locator(".widget-output img").first.get_attribute("src") or ""


def test_a_learner_runs_the_section_turns_the_panel_and_restarts_cleanly(
    lab: tuple[JupyterLab, Path], browser: Browser
) -> None:
    server, state = lab
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    open_notebook(page, server, SECTION)
    run_all(page)
    assert not page.locator(".jp-OutputArea-output[data-mime-type*='error']").count()

    run = page.get_by_role("button", name="Run", exact=True)
    panel = page.locator(".widget-vbox").filter(has=run).last
    panel.scroll_into_view_if_needed()
    expect(panel.locator(".widget-output img")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=SCREENSHOTS / "panel-06.png")
    before = output_image(panel)

    readout = panel.locator(".widget-slider").first.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    run.click()
    expect(panel.locator(".widget-html", has_text="run 2:")).to_contain_text(
        "drain_seconds=0.0", timeout=30_000
    )
    assert output_image(panel) != before

    # Restart the kernel in the middle of a run: its servers must not outlive it.
    page.get_by_role("button", name="Run", exact=True).click()
    deadline = time.monotonic() + 15
    while not live_servers(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_servers(state), "the run started no server"
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    deadline = time.monotonic() + 15
    while live_servers(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live_servers(state)
    context.close()
    httpx.get(f"{server.url}/api/status?token={server.token}").raise_for_status()


@pytest.mark.parametrize("section", sorted(PANELS))
def test_a_panel_renders_and_a_click_reruns_it(
    lab: tuple[JupyterLab, Path], browser: Browser, section: str
) -> None:
    server, state = lab
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    open_notebook(page, server, f"panel-{section}.ipynb")
    run_all(page)
    run = page.get_by_role("button", name="Run", exact=True)
    panel = page.locator(".widget-vbox").filter(has=run).last
    expect(panel.locator(".widget-output img")).to_be_visible()
    panel.screenshot(path=SCREENSHOTS / f"panel-{section}.png")
    before = output_image(panel)

    run.click()
    expect(panel.locator(".widget-html", has_text="run 2:")).to_be_visible(timeout=40_000)
    assert output_image(panel) != before
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    deadline = time.monotonic() + 15
    while live_servers(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live_servers(state)
    context.close()
