"""axe-core on the built book and on the app's UI: no critical or serious violations.

axe-core comes from the `axe-playwright-python` wheel (its bundled `axe.min.js`), injected by
Playwright into the page: nothing is loaded from a CDN.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

import opslab
from opslab.app import AppServer
from opslab.book import ROOT, load_yaml, toc_files

PAGES = [f"{file}.html" for file in toc_files(load_yaml(ROOT / "_toc.yml"))]

BLOCKING = {"critical", "serious"}


def blocking_violations(page: Page) -> list[str]:
    """One line per critical or serious axe violation on the page: rule, impact, first nodes."""
    response = Axe().run(page).response
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]}"
        for v in response["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    """The sample app, as a learner starts it in 00-setup."""
    server = opslab.start_app(name="a11y-ui")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path", PAGES)
def test_book_page_has_no_serious_axe_violations(page: Page, site: str, path: str) -> None:
    page.goto(site + path)
    assert blocking_violations(page) == [], path


@pytest.mark.parametrize("width", [1280, 390])
def test_app_ui_has_no_serious_axe_violations(page: Page, app: AppServer, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(app.url + "/")
    page.wait_for_load_state("networkidle")
    assert blocking_violations(page) == []
