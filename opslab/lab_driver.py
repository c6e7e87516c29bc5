"""Drive a JupyterLab in a browser (Playwright): Run All, bounded by progress, not a total.

Used by the browser tests, wherever the JupyterLab runs: local, a learner's server on the hub,
the single-user image.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from playwright.sync_api import Page

# Run All is done when the kernel is idle and every code cell has an execution count. The
# wait is bounded by progress, not by a total: it fails when no cell has finished for
# STALL_SECONDS (longer than any one cell of the course takes, its own limits included), so
# a slow, shared machine makes it slower but not red. An error output fails it at once with
# the error's text; Run All stops at an error and would otherwise wait for cells that never run.
STALL_SECONDS = 60
RUN_STATE = r"""() => {
    const nb = window.jupyterapp.shell.currentWidget;
    const kernel = nb && nb.sessionContext.session && nb.sessionContext.session.kernel;
    const cells = [...nb.content.model.cells].filter(c => c.type === 'code');
    // From the cells' models, not the page: JupyterLab renders only the cells in view.
    const strip = text => text.replace(/\x1b\[[0-9;]*m/g, '');
    const errors = cells.flatMap(c => (c.toJSON().outputs || [])
        .filter(o => o.output_type === 'error')
        .map(o => [`${o.ename}: ${o.evalue}`, ...(o.traceback || [])].join('\n'))
        .map(text => strip(text).slice(-2000)));
    return {
        idle: Boolean(kernel) && kernel.status === 'idle',
        done: cells.filter(c => c.executionCount !== null).length,
        total: cells.length,
        errors,
    };
}"""


def start_run_all(page: Page) -> None:
    """Click Run All in the page's current notebook (returns at once)."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def wait_until_run(pages: Mapping[str, Page], poll: float = 0.5) -> None:
    """Wait until every notebook has run to the end; fail on the first error output, or
    when one of them has had no cell finish for STALL_SECONDS."""
    progress = {label: (-1, time.monotonic()) for label in pages}
    waiting = dict(pages)
    while waiting:
        for label, page in list(waiting.items()):
            state = page.evaluate(RUN_STATE)
            if state["errors"]:
                raise AssertionError(f"{label}: a cell failed: {state['errors'][0]}")
            if state["idle"] and state["done"] == state["total"] > 0:
                del waiting[label]
                continue
            if state["done"] != progress[label][0]:
                progress[label] = (state["done"], time.monotonic())
            stalled = time.monotonic() - progress[label][1]
            if stalled >= STALL_SECONDS:
                raise AssertionError(f"{label}: no cell finished in {STALL_SECONDS} s: {state}")
        time.sleep(poll)


def run_all(page: Page) -> None:
    """Run every cell of the page's notebook and wait for the end."""
    start_run_all(page)
    wait_until_run({"notebook": page})
